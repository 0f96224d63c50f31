"""Dedup decides per *unit*. On a problem table a unit is a row; on a trace table it is
all the rows sharing the id column (a problem's traces), so deduplicating problems in a
trace table drops whole problems, never single traces.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

KeepPolicy = Literal["first", "most_correct", "hardest", "shortest"]
UnitKind = Literal["auto", "row", "id"]
KEEP_DESCRIPTION = (
    "Which member of a duplicate cluster is kept: 'first' (frame order), 'most_correct' "
    "(most rows with correct = true: needs a verify step first), 'hardest' (lowest "
    "pass_rate: needs a grade step first), 'shortest' (fewest characters)."
)
UNIT_DESCRIPTION = (
    "What is kept or rejected as one: 'row' (each row), 'id' (all rows sharing id_column, "
    "e.g. a problem's traces); 'auto' = 'id' on a trace table (it has trace_id), else 'row'."
)
_NEEDS = {"most_correct": "correct", "hardest": "pass_rate"}
ROW = "__dedup_row"


def policy_columns(keep: KeepPolicy) -> set[str]:
    return {_NEEDS[keep]} if keep in _NEEDS else set()


def unit_key(frame: pl.DataFrame, id_column: str, unit: UnitKind) -> str:
    """The column that identifies a unit in `keyed(frame)`."""
    if unit == "auto":
        unit = "id" if "trace_id" in frame.columns and id_column != "trace_id" else "row"
    return id_column if unit == "id" else ROW


def keyed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_row_index(ROW)


def units(frame: pl.DataFrame, text_column: str, id_column: str, keep: KeepPolicy,
          key: str, carry: tuple[str, ...] = ()) -> pl.DataFrame:
    """One row per unit of a `keyed` frame, in frame order: unit (0..), key, id, text,
    first_row, the keep policy's statistic and the `carry` columns (first value)."""
    for column in dict.fromkeys((text_column, id_column, *policy_columns(keep), *carry)):
        if column not in frame.columns:
            hint = ""
            if column in _NEEDS.values():
                hint = f" (keep: {keep} ranks duplicates by it; add the step that makes it, or use keep: first)"
            raise ValueError(f"dedup needs column {column!r}, which the frame lacks{hint}")
    if frame[id_column].null_count():
        raise ValueError(f"column {id_column!r} has null values; dedup needs an id on every row")
    stats = []
    if keep == "most_correct":
        stats.append(pl.col("correct").cast(pl.Boolean).fill_null(False).cast(pl.Int64).sum().alias("correct_count"))
    if keep == "hardest":
        stats.append(pl.col("pass_rate").cast(pl.Float64).mean().alias("pass_rate"))
    columns = dict.fromkeys((ROW, key, text_column, id_column, *policy_columns(keep), *carry))
    grouped = (
        frame.select(*columns)
        .group_by(key, maintain_order=True)
        .agg(
            pl.col(id_column).first().alias("id"),
            pl.col(text_column).first().alias("text"),
            # Same rule as problem_id: texts differing only in whitespace are one text.
            pl.col(text_column).str.replace_all(r"\s+", " ").str.strip_chars().n_unique().alias("variants"),
            pl.col(ROW).min().alias("first_row"),
            *stats,
            *[pl.col(c).first() for c in carry],
        )
    )
    varying = grouped.filter(pl.col("variants") > 1)
    if len(varying):
        raise ValueError(
            f"column {text_column!r} differs between rows with the same {id_column!r} "
            f"(e.g. {id_column} = {varying['id'][0]!r}); set id_column to a column "
            f"that identifies the text (e.g. trace_id for completions)"
        )
    return grouped.drop("variants").with_row_index("unit")


def _rank(keep: KeepPolicy) -> list[pl.Expr]:
    return {
        "first": [pl.col("first_row")],
        "shortest": [pl.col("text").str.len_chars(), pl.col("first_row")],
        "most_correct": [-pl.col("correct_count"), pl.col("first_row")],
        "hardest": [pl.col("pass_rate").fill_null(float("inf")), pl.col("first_row")],
    }[keep]


def priority(units_frame: pl.DataFrame, keep: KeepPolicy) -> np.ndarray:
    """Each unit's place in the keep order (0 = kept first), by row of `units_frame`."""
    order = units_frame.with_row_index("position").sort(_rank(keep))["position"].to_numpy()
    places = np.empty(len(order), dtype=np.int64)
    places[order] = np.arange(len(order))
    return places


def keepers(units_frame: pl.DataFrame, keep: KeepPolicy) -> pl.DataFrame:
    """For units with a `cluster` column (null = no cluster) whose members are all alike:
    `kept`, the id of the unit its cluster keeps, and `kept_unit`, that unit's number
    (both null without cluster)."""
    rank = _rank(keep)
    clustered = pl.col("cluster").is_not_null()
    chosen = units_frame.with_columns(
        kept_unit=pl.when(clustered).then(pl.col("unit").sort_by(rank).first().over("cluster")),
    )
    names = chosen.select(kept_unit="unit", kept="id")
    return chosen.join(names, on="kept_unit", how="left", maintain_order="left")


def to_rows(frame: pl.DataFrame, key: str, decisions: pl.DataFrame, added: list[str]) -> pl.DataFrame:
    """Attach per-unit decision columns (keyed by `key`) to every row of the `keyed`
    frame, replacing earlier columns of the same names, and drop the row index."""
    frame = frame.drop([c for c in added if c in frame.columns])
    return frame.join(decisions.select(key, *added), on=key, how="left", maintain_order="left").drop(ROW)
