"""The one filter contract (curate.core.operator.Filter): row filters give evidence and a
reason, global filters override `mark`, and the base fills reject_detail and counts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from curate.core.operator import Filter, OperatorConfig, StepContext


class LongProblemConfig(OperatorConfig):
    max_chars: int = 5


class DropLongProblems(Filter):
    name = "test_drop_long_problems"
    Config = LongProblemConfig
    adds = ("reject_reason", "reject_detail")
    reject_reasons = ("long_problem",)

    def evidence(self):
        # Named like a real column: the measure must not overwrite it.
        return {"problem": pl.col("problem").str.len_chars()}

    def rejects(self, measures):
        return pl.when(measures["problem"] > self.config.max_chars).then(pl.lit("long_problem"))


class DropOddRows(Filter):
    """A global filter: decides on row positions, so it marks the whole frame itself."""

    name = "test_drop_odd_rows"
    scope = "global"

    def mark(self, frame, ctx):
        return frame.with_columns(reject_reason=pl.when(pl.int_range(pl.len()) % 2 == 1).then(pl.lit("odd")))


def context(tmp_path: Path) -> StepContext:
    return StepContext(step_id="filter", step_dir=tmp_path, cache_dir=tmp_path)


def test_row_filter_writes_its_measures_as_detail_and_counts_rejections(tmp_path):
    frame = pl.DataFrame({"problem": ["short", "a longer one", "tiny", "longer again"]})
    ctx = context(tmp_path)
    result = DropLongProblems(LongProblemConfig()).apply(frame, ctx)
    assert result.columns == ["problem", "reject_reason", "reject_detail"]
    assert result["problem"].to_list() == frame["problem"].to_list()
    assert result["reject_reason"].to_list() == [None, "long_problem", None, "long_problem"]
    assert [json.loads(d) if d else None for d in result["reject_detail"]] == [
        None, {"problem": 12}, None, {"problem": 12}]
    assert dict(ctx.metrics) == {"rejected": 2}


def test_tokens_removed_is_counted_where_the_frame_has_token_columns(tmp_path):
    frame = pl.DataFrame({"problem": ["short", "a longer one"], "reasoning_tokens": [10, 20],
                          "answer_tokens": [1, 2]})
    ctx = context(tmp_path)
    DropLongProblems(LongProblemConfig()).apply(frame, ctx)
    assert dict(ctx.metrics) == {"rejected": 1, "tokens_removed": 22}


def test_global_filter_marks_the_frame_and_the_base_counts(tmp_path):
    frame = pl.DataFrame({"problem": list("abcde")})
    ctx = context(tmp_path)
    result = DropOddRows(OperatorConfig()).apply(frame, ctx)
    assert result.columns == ["problem", "reject_reason"]
    assert result["reject_reason"].to_list() == [None, "odd", None, "odd", None]
    assert dict(ctx.metrics) == {"rejected": 2}
