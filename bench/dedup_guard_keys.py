"""The number and question guard's verdict alone, per class of a pair set: how many pairs it
calls the same problem (fast: no embeddings; semantic_dedup merges a pair only when the
guard agrees and the cosine is high enough, so for duplicate classes this bounds recall
from above, for the other classes merges from above).

    PYTHONPATH=. python bench/dedup_guard_keys.py dedup_pairs dev     # bench/realdata set A
    PYTHONPATH=. python bench/dedup_guard_keys.py dedup_edges dev     # bench/dedup_edges.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
from common import load  # noqa: E402

from curate.dedup.questions import question_keys, same_question  # noqa: E402
from curate.text import number_contexts_key, number_key, template_text  # noqa: E402


def keys(column: str, prefix: str) -> list[pl.Expr]:
    text = pl.col(column)
    return [e.name.prefix(prefix) for e in question_keys(text)] + [
        number_key(text).alias(f"{prefix}numbers"), number_contexts_key(text).alias(f"{prefix}contexts"),
        template_text(text).alias(f"{prefix}template")]


def main() -> None:
    name, split = sys.argv[1], sys.argv[2]
    rows = pl.DataFrame(load(name, split)).select("class", "problem", "variant")
    numbers = (pl.col("left_numbers") == pl.col("right_numbers")) | (
        (pl.col("left_contexts") == pl.col("right_contexts")) & (pl.col("left_template") != pl.col("right_template")))
    verdict = rows.with_columns(*keys("problem", "left_"), *keys("variant", "right_")).select(
        "class", numbers=numbers, question=same_question())
    summary = verdict.group_by("class").agg(
        pairs=pl.len(), same_numbers=pl.col("numbers").sum(), same_question=pl.col("question").sum(),
        same_problem=(pl.col("numbers") & pl.col("question")).sum()).sort("class")
    with pl.Config(tbl_rows=30):
        print(summary)


if __name__ == "__main__":
    main()
