"""Pushing a published version folder to a Hugging Face Hub dataset repo.

Each version becomes one commit on a branch (`main` by default) and a tag named after
the version, so `load_dataset(repo, revision="v3")` always finds exactly that version.
Shards are uploaded a few at a time before the single commit that adds them all: the Hub
keeps uploaded blobs, so a push that fails half-way resumes by skipping the shards it
already sent, and readers of the branch never see a half-uploaded version.
`upload_large_folder` is not used because it writes its resume state into the folder
being uploaded, and published version folders are never modified.

The token comes only from the HF_TOKEN environment variable; it is passed to
huggingface_hub and never logged or written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from curate.publish.versions import LINEAGE_FILE, check_version

log = logging.getLogger("curate.publish")

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_NETWORK_ERRORS = {"TransportError", "ConnectionError", "Timeout"}


class HubPushError(RuntimeError):
    """The push cannot start or did not finish; the message says why."""


@dataclass(frozen=True)
class HubPushResult:
    repo_id: str
    version: str
    branch: str
    commit: str
    url: str
    created: bool  # False when the version's tag already existed: nothing was uploaded


def push_to_hub(
    version_folder: Path,
    repo_id: str,
    *,
    private: bool = True,
    branch: str = "main",
    endpoint: str | None = None,
    retries: int = 3,
    num_threads: int = 4,
) -> HubPushResult:
    """Upload `version_folder` to the dataset repo `repo_id`, commit it to `branch` and tag
    the commit with the version name. Pushing a version whose tag exists is a no-op."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    from curate import __version__

    folder = Path(version_folder)
    lineage_path = folder / LINEAGE_FILE
    if not lineage_path.is_file():
        raise HubPushError(f"{folder} is not a published version folder ({LINEAGE_FILE} is missing)")
    lineage = json.loads(lineage_path.read_text())
    check_version(folder.parent, folder.name, lineage)  # never upload files other than those recorded
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise HubPushError("HF_TOKEN is not set: export a Hub token with write access to push")
    api = HfApi(endpoint=endpoint, token=token, library_name="curate", library_version=__version__)

    for attempt in range(retries + 1):
        try:
            return _push_once(api, folder, repo_id, lineage, private, branch, num_threads)
        except OfflineModeIsEnabled:
            raise HubPushError("HF_HUB_OFFLINE is set: unset it to push to the Hub") from None
        except Exception as error:
            if attempt == retries or not _is_transient(error):
                raise
            wait = 2**attempt
            log.warning(
                "push of %s to %s failed (%s); retrying in %d s, uploaded shards are kept",
                lineage["version"], repo_id, _describe(error), wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


# Folders of data shards: the default config's and the preference config's.
_SHARD_FOLDERS = ("data/", "preference/")


def _push_once(api, folder: Path, repo_id: str, lineage: dict, private: bool, branch: str, num_threads: int):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    version = lineage["version"]
    repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    tagged = next((tag for tag in refs.tags if tag.name == version), None)
    if tagged is not None:
        log.info("%s is already on %s as tag %s; nothing to push", version, repo_id, version)
        return HubPushResult(repo_id, version, branch, tagged.target_commit, str(repo_url), created=False)
    if branch not in {b.name for b in refs.branches}:
        api.create_branch(repo_id, branch=branch, repo_type="dataset")

    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    remote = api.list_repo_files(repo_id, repo_type="dataset", revision=branch)
    # Shards of an earlier version that this one lacks would otherwise be loaded with it.
    stale = [path for path in remote if path.startswith(_SHARD_FOLDERS) and path not in local]
    additions = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path)) for path in local]

    shards = [op for op in additions if op.path_in_repo.startswith(_SHARD_FOLDERS)]
    for start in range(0, len(shards), num_threads):
        batch = shards[start : start + num_threads]
        api.preupload_lfs_files(
            repo_id, additions=batch, repo_type="dataset", revision=branch, num_threads=num_threads, free_memory=False
        )
        log.info("uploaded shards %d-%d of %d to %s", start + 1, start + len(batch), len(shards), repo_id)

    commit = api.create_commit(
        repo_id,
        operations=additions + [CommitOperationDelete(path_in_repo=path) for path in stale],
        commit_message=f"Publish {version}",
        commit_description=f"curate dataset version {version}, fingerprint {lineage.get('fingerprint')}",
        repo_type="dataset",
        revision=branch,
        num_threads=num_threads,
    )
    api.create_tag(
        repo_id, tag=version, revision=commit.oid, repo_type="dataset",
        tag_message=f"curate {version} (fingerprint {lineage.get('fingerprint')})",
    )
    log.info("pushed %s to %s@%s (commit %s, tag %s)", version, repo_id, branch, commit.oid, version)
    return HubPushResult(repo_id, version, branch, commit.oid, str(repo_url), created=True)


def _is_transient(error: BaseException | None) -> bool:
    """A server-side or network failure somewhere in the exception chain (worth a retry)."""
    from huggingface_hub.errors import HfHubHTTPError

    while error is not None:
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            return error.response.status_code in _TRANSIENT_STATUS
        # By class name: the HTTP client library differs between huggingface_hub releases.
        if _NETWORK_ERRORS & {cls.__name__ for cls in type(error).__mro__}:
            return True
        error = error.__cause__
    return False


def _describe(error: BaseException) -> str:
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
