"""Shared helpers for the real-data evaluation sets: splitting, reading, writing.

Every set has a `dev` and a `heldout` split built from disjoint source problems (the
split of a problem is a hash of its text or id, so it is stable across sets and reruns).
Tune thresholds on dev; report on heldout.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SPLITS = ("dev", "heldout")


def split_of(key: str) -> str:
    """'dev' or 'heldout' for a source problem, by a hash of its key (about half each)."""
    return "dev" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


def math500_key(idx) -> str:
    """MATH-500 problems are split by their index, so sets B and C agree on the split."""
    return f"math500:{idx}"


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.suffix == ".gz":
        # mtime=0: the same rows give byte-identical files on every rebuild.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
            handle.write(text.encode())
    else:
        path.write_text(text, encoding="utf-8")


def load(name: str, split: str) -> list[dict]:
    """Rows of one set and split, e.g. load('dedup_pairs', 'heldout')."""
    matches = sorted(DATA.glob(f"{name}.{split}.jsonl*"))
    if not matches:
        raise FileNotFoundError(f"no {name}.{split}.jsonl[.gz] under {DATA}: run bench/realdata/build.py")
    return read_jsonl(matches[0])
