"""decontaminate on the real-data pool (bench/realdata set A), per label and per match.

    PYTHONPATH=. python bench/dedup_decontam.py heldout '{"methods": ["ngram"]}'

The second argument is a JSON object of Decontaminate.Config fields (default: defaults).
Rows with a null problem are skipped (dev has one). Prints clean false flags, planted
same-problem rows not caught as `contaminated`, and the counts per label and reason.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
import evaluate  # noqa: E402
from common import DATA, load  # noqa: E402

from curate.dedup.operators import Decontaminate  # noqa: E402


def main() -> None:
    split = sys.argv[1] if len(sys.argv) > 1 else "heldout"
    config = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    rows = [r for r in load("decontam_pool", split) if r["problem"]]
    eval_sets = [{"path": str(DATA / f"evalset_{name}.jsonl"), "name": name}
                 for name in ("aime24", "aime25", "amc23", "gsm8k_test")]
    ctx = evaluate.context("decontam")
    op = Decontaminate(Decontaminate.Config(eval_sets=eval_sets, **config))
    op.setup(ctx)
    started = time.perf_counter()
    out = op.apply(evaluate.problems([r["problem"] for r in rows]), ctx)
    seconds = time.perf_counter() - started
    counts = defaultdict(Counter)
    for row, reason, detail in zip(rows, out["reject_reason"], out["reject_detail"], strict=True):
        counts[row["label"]][reason] += 1
        if reason and row["label"] == "clean":
            print("false flag:", detail[:300])
        if row["label"] == "same_problem" and reason != "contaminated":
            print("missed:", row["class"], row["problem"][:100])
    for label, by_reason in counts.items():
        print(label, dict(by_reason))
    print("seconds", round(seconds, 2), dict(ctx.metrics))


if __name__ == "__main__":
    main()
