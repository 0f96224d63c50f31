"""Default locations on disk."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Where models are assembled when no run cache dir is given ($CURATE_CACHE_DIR)."""
    return Path(os.environ.get("CURATE_CACHE_DIR") or Path.home() / ".cache" / "curate")
