"""Publish: a finished run as a versioned Hugging Face dataset (Hub-layout folder with a
dataset card and lineage), on disk and on the Hub.

`publish_run` writes a new version folder (or finds the existing one with the same
content), `list_versions` and `diff_versions` compare them, `push_to_hub` uploads one.
"""

from curate.publish.config import PublishConfig
from curate.publish.hub import HubPushError, HubPushResult, push_to_hub
from curate.publish.run import RunDirError
from curate.publish.versions import (
    DamagedVersionError,
    DiffResult,
    PublishResult,
    diff_versions,
    list_versions,
    publish_run,
)

__all__ = [
    "DamagedVersionError",
    "DiffResult",
    "HubPushError",
    "HubPushResult",
    "PublishConfig",
    "PublishResult",
    "RunDirError",
    "diff_versions",
    "list_versions",
    "publish_run",
    "push_to_hub",
]
