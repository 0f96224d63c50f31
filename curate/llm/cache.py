"""Durable store of every completion, keyed by what produced it.

SQLite in WAL mode with synchronous=FULL: each completion is committed (and fsync'd)
as it arrives, so a run killed at any instant loses at most the completions still in
flight. Several processes may share one file (busy timeout), which is how two runs
pointed at one cache reuse each other's work.

Runs sharing a cache claim requests before generating them (`claim`): a request another
live run has claimed is waited for instead of generated twice. A claim is stale, and
taken over, when its process is gone (same host) or it has shown no progress for
CLAIM_TTL_S (any host).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from curate.core.io import open_sqlite
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
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
)
"""
CLAIM_TTL_S = 1800.0  # no completion stored by a claim's owner for this long: the claim is stale
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
        self.path = path
        self._db = open_sqlite(path, _SCHEMA, _CLAIMS, synchronous="FULL")  # completions cost money
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:12]}"  # one per cache object

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
            self._db.executemany("DELETE FROM claims WHERE key = ?", [(row[0],) for row in rows])
            self._db.execute("UPDATE claims SET heartbeat = ? WHERE owner = ?", (now, self.owner))

    def claim(self, keys: list[str]) -> tuple[set[str], dict[str, Completion], set[str]]:
        """Claim `keys` for this cache object, in one transaction: (claimed now, already
        cached, held by another live run). Stale claims are taken over."""
        keys = list(dict.fromkeys(keys))
        now = time.time()
        claimed: set[str] = set()
        held: set[str] = set()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cached = self.get_many(keys)
            for start in range(0, len(keys), _LOOKUP_BATCH):
                batch = [k for k in keys[start:start + _LOOKUP_BATCH] if k not in cached]
                marks = ",".join("?" * len(batch))
                holders = {key: (owner, host, pid, beat) for key, owner, host, pid, beat in self._db.execute(
                    f"SELECT key, owner, host, pid, heartbeat FROM claims WHERE key IN ({marks})", batch)}
                for key in batch:
                    holder = holders.get(key)
                    if holder is not None and holder[0] != self.owner and not self._stale(*holder[1:], now):
                        held.add(key)
                    else:
                        claimed.add(key)
            self._db.executemany("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)",
                                 [(key, self.owner, self.host, self.pid, now) for key in claimed])
        return claimed, cached, held

    def _stale(self, host: str, pid: int, heartbeat: float, now: float) -> bool:
        if now - heartbeat > CLAIM_TTL_S:
            return True
        if host != self.host:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def release(self) -> None:
        """Drop this object's claims (requests it did not finish: budget, error, stop)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    def close(self) -> None:
        self._db.close()
