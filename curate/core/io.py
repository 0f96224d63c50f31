"""Atomic writes: a reader (or a resumed run) sees a whole file or none. Bounded reads of
files that must be regular (a FIFO or /dev/zero named as a recipe must not hang or fill memory)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success fsync it and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates the file 0600; a plain open() would give 0666 minus the umask
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief window, only off Linux)
    os.umask(mask)
    return mask


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def write_json(data: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def open_sqlite(path: Path, *schema: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A cache database shared by processes and threads: WAL (readers never block the
    writer), autocommit (every INSERT is its own transaction), the tables created if new.
    `synchronous` FULL where losing the last writes to a power cut would cost money."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    for statement in schema:
        db.execute(statement)
    return db


def read_json_object(path: Path, error: type[Exception]) -> dict:
    """The JSON object in `path`, or `error` naming the file when it is not one."""
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as problem:
        raise error(f"{path}: not valid JSON ({problem})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object")
    return value


class NotRegularFileError(ValueError):
    """A path that must be a regular file is a device, FIFO, socket or directory."""


def file_kind(mode: int) -> str:
    """What a path of this st_mode is, in words, when it is not a regular file."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the regular file `path` (one more than allowed tells the
    caller it is too large, whatever size the file system reports: /dev/zero says 0).
    Opened without blocking, so a FIFO is refused at once instead of waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path} is {file_kind(mode)}, not a regular file")
        return handle.read(limit + 1)
