"""Durable store of every completion, keyed by what produced it.

SQLite in WAL mode with synchronous=FULL: each completion is committed (and fsync'd)
as it arrives, so a run killed at any instant loses at most the completions still in
flight. Several processes may share one file (busy timeout), which is how two runs
pointed at one cache reuse each other's work.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from curate.llm.backends.base import Completion, Request
from curate.schema import content_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""
CACHE_FILE = Path("generate") / "responses.sqlite"  # under the run's cache dir
_LOOKUP_BATCH = 500  # below SQLite's bound-parameter limit


def request_key(backend: str, model: str, prompt: str, sampling: dict, options: dict,
                sample_index: int, seed: int) -> str:
    """Hash of everything that decides a completion; teacher names are deliberately not in it."""
    identity = {"backend": backend, "model": model, "prompt": prompt, "sampling": sampling,
                "options": options, "sample_index": sample_index, "seed": seed}
    return content_hash(json.dumps(identity, sort_keys=True, ensure_ascii=False))


class ResponseCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # autocommit: every INSERT is its own durable transaction
        self._db = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        for start in range(0, len(keys), _LOOKUP_BATCH):
            batch = keys[start:start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(f"SELECT key, result FROM completions WHERE key IN ({marks})", batch)
            found.update((key, Completion(**json.loads(result))) for key, result in rows)
        return found

    def put(self, backend: str, model: str, results: list[tuple[Request, Completion]]) -> None:
        """Store completions; one call is one transaction (one fsync)."""
        now = time.time()
        rows = [(request.key, backend, model, request.sample_index, request.seed, request.text,
                 json.dumps(asdict(completion), ensure_ascii=False), now) for request, completion in results]
        with self._db:  # BEGIN ... COMMIT around the batch
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?,?)", rows)

    def close(self) -> None:
        self._db.close()
