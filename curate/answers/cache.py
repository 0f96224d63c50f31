"""Durable store of answer verdicts, reused across runs (and by any stage that checks answers).

A verdict is keyed by (reference, extracted answer, verifier): the verifier names the
comparison rules and their version (`curate.answers.math.VERIFIER`), so a changed rule or a
new math-verify never reuses an old verdict. Only decided verdicts are stored (correct,
wrong, parse_error): a timeout or a crash is retried on the next run. SQLite in WAL mode,
shared safely by several processes (busy timeout), like the generation cache.

    cache = VerdictCache.in_dir(ctx.cache_dir)
    verdicts = verify_pairs(pairs, cache=cache)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from curate.core.io import open_sqlite

CACHE_FILE = Path("answers") / "verdicts.sqlite"  # under the run's cache dir
STORED_STATUSES = frozenset({"correct", "wrong", "parse_error"})
_LOOKUP_BATCH = 500  # below SQLite's bound-parameter limit
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    verifier TEXT NOT NULL,
    reference TEXT NOT NULL,
    answer TEXT NOT NULL,
    correct INTEGER,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


class Verdict(NamedTuple):
    correct: bool | None
    status: str  # correct | wrong | timeout | parse_error | error
    reason: str


def verdict_key(reference: str, answer: str, verifier: str) -> str:
    return hashlib.sha256(json.dumps([verifier, reference, answer], ensure_ascii=False).encode()).hexdigest()


class VerdictCache:
    """get_many/put_many over (reference, answer) pairs for one verifier."""

    def __init__(self, path: Path):
        path = Path(path)
        self.path = path
        self._db = open_sqlite(path, _SCHEMA)

    @classmethod
    def in_dir(cls, cache_dir: Path) -> VerdictCache:
        """The cache file of a run's cache dir."""
        return cls(Path(cache_dir) / CACHE_FILE)

    def get_many(self, pairs: Iterable[tuple[str, str]], verifier: str) -> dict[tuple[str, str], Verdict]:
        by_key = {verdict_key(r, a, verifier): (r, a) for r, a in pairs}
        keys = list(by_key)
        found: dict[tuple[str, str], Verdict] = {}
        for start in range(0, len(keys), _LOOKUP_BATCH):
            batch = keys[start : start + _LOOKUP_BATCH]
            rows = self._db.execute(
                f"SELECT key, correct, status, reason FROM verdicts WHERE key IN ({','.join('?' * len(batch))})", batch
            )
            for key, correct, status, reason in rows:
                found[by_key[key]] = Verdict(None if correct is None else bool(correct), status, reason)
        return found

    def put_many(self, verdicts: Iterable[tuple[tuple[str, str], Verdict]], verifier: str) -> None:
        """Store decided verdicts (one transaction); undecided ones are skipped."""
        now = time.time()
        rows = [
            (verdict_key(r, a, verifier), verifier, r, a, None if v.correct is None else int(v.correct),
             v.status, v.reason, now)
            for (r, a), v in verdicts if v.status in STORED_STATUSES
        ]
        if not rows:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?)", rows)

    def close(self) -> None:
        self._db.close()
