"""How cache keys name a model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from curate.models.bundled import BUNDLED_PREFIX


def model_identity(model: str) -> str:
    """How cache keys name a model: a Hub id or bundled name as written; a local file or
    folder also by its files' names, sizes and modification times, so a model retrained
    into the same folder is never answered from the old weights' cache. (Sizes and times,
    not contents: hashing gigabytes of weights per run would cost more than it saves.)"""
    path = Path(model).expanduser()
    if model.startswith(BUNDLED_PREFIX) or not path.exists():
        return model
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        name = file.name if file == path else str(file.relative_to(path))
        digest.update(f"{name}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\n".encode())
    return f"{model}@{digest.hexdigest()[:16]}"
