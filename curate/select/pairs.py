"""Preference pairs from verified traces (`preference_pairs`): per problem, a verified
correct trace (chosen) against a verified wrong one (rejected), for DPO-style training.

The step keeps every row (it rejects nothing) and writes its pairs next to its output, as
`pairs.parquet` in its step folder; publish turns them into the dataset's `preference`
config. Place it after `verify` (and `grade`, to carry difficulty onto the pairs) and
before `select_traces`, which rejects the wrong traces the pairs need.

Only decided traces take part: chosen traces are `correct` with verify_status 'correct',
rejected ones `correct == false` with verify_status 'wrong' and an extracted answer (never
'no_answer', 'parse_error', 'timeout', 'error' or an unverified row), and neither side is a
truncated one (finish_reason 'length'). A wrong trace whose text, final line aside, equals
a correct trace of the same problem is refused as a negative: the pair would teach only
the last line. Problems without an eligible correct or wrong trace give no pair; the
step's metrics count them by cause.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field

from curate.core.io import write_parquet
from curate.core.operator import Operator, OperatorConfig, StepContext, register
from curate.core.rundir import PAIRS
from curate.schema import content_hash_expr

# Columns copied onto each pair once per side (prefixed chosen_/rejected_) when present.
TRACE_FIELDS = ("trace_id", "teacher", "model", "reasoning", "answer_text", "completion", "extracted_answer",
                "reasoning_tokens", "answer_tokens")
# Problem columns copied onto each pair when present.
PROBLEM_FIELDS = ("problem_id", "problem", "reference_answer", "source", "domain", "pass_rate", "band", "n_samples")

_BODY, _ANSWER, _TOKENS, _DRAW, _RANK = "__body", "__answer", "__tokens", "__draw", "__rank"


class PreferencePairsConfig(OperatorConfig):
    teachers: Literal["any", "same"] = Field(
        "any", description="any: chosen and rejected may come from different teachers; same: both from one teacher."
    )
    pairs_per_problem: int = Field(1, ge=1, description="Most pairs formed per problem (one rejected trace each).")
    negative: Literal["most_common_wrong", "longest", "random"] = Field(
        "most_common_wrong",
        description="Which wrong traces become rejected: most_common_wrong: those giving the wrong answer most "
        "samples of the problem agree on (the most confident mistake); longest: the longest; random: a seeded draw.",
    )
    chosen: Literal["shortest", "random"] = Field(
        "shortest", description="Which correct traces become chosen: the shortest first, or a seeded draw."
    )
    guard_final_line: bool = Field(
        True, description="Refuse a wrong trace whose text, final line aside, equals a correct trace of the problem."
    )
    seed: int = Field(0, description="Seed of the random draws (and of tie-breaks).")
    group_by: str = Field("problem_id", description="Column that identifies a problem.")


@register
class PreferencePairs(Operator):
    """Form chosen/rejected pairs per problem from verified traces; rows pass through."""

    name = "preference_pairs"
    Config = PreferencePairsConfig
    scope = "global"

    def input_columns(self) -> set[str]:
        columns = {self.config.group_by, "trace_id", "correct", "verify_status", "problem"}
        if self.config.teachers == "same":
            columns.add("teacher")
        return columns

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        missing = {"trace_id", "correct", "verify_status", self.config.group_by} - set(frame.columns)
        if missing:
            raise ValueError(f"preference_pairs needs the verify columns {sorted(missing)}: run `verify` first")
        pairs, counts = form_pairs(frame, self.config)
        for name, value in counts.items():
            ctx.count(name, value)
        write_parquet(pairs, ctx.step_dir / PAIRS)
        return frame

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        return (f"{int(metrics.get('pairs', 0)):,} pairs from {int(metrics.get('problems_paired', 0)):,} of "
                f"{int(metrics.get('problems', 0)):,} problems")


def form_pairs(frame: pl.DataFrame, config: PreferencePairsConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """(pairs, funnel counts). Every problem lands in exactly one of problems_no_correct,
    problems_no_wrong, problems_no_same_teacher (teachers: same) and problems_paired; traces_excluded counts the
    undecided, unparseable and truncated traces."""
    problem = config.group_by
    groups = [problem, "teacher"] if config.teachers == "same" else [problem]
    if "teacher" in groups and "teacher" not in frame.columns:
        raise ValueError("preference_pairs with teachers: same needs a 'teacher' column")
    traces = _prepare(frame, config)
    stopped = pl.col("finish_reason").fill_null("") == "length" if "finish_reason" in frame.columns else pl.lit(False)
    has_answer = pl.col(_ANSWER).is_not_null() & (pl.col(_ANSWER) != "")
    is_correct = (pl.col("correct") == True) & (pl.col("verify_status") == "correct") & ~stopped  # noqa: E712
    is_wrong = (pl.col("correct") == False) & (pl.col("verify_status") == "wrong") & has_answer & ~stopped  # noqa: E712
    chosen = traces.filter(is_correct)
    wrong = traces.filter(is_wrong)
    if config.guard_final_line:
        bodies = chosen.select(problem, _BODY).unique()
        negatives = wrong.join(bodies, on=[problem, _BODY], how="anti")
    else:
        negatives = wrong

    # Rank chosen traces and negatives within their group; negative j is paired with chosen j mod C.
    chosen_key = [_TOKENS, "trace_id"] if config.chosen == "shortest" else [_DRAW, "trace_id"]
    chosen = chosen.with_columns(pl.struct(chosen_key).rank("ordinal").over(groups).cast(pl.Int64).sub(1).alias(_RANK))
    negatives = _rank_negatives(negatives, config, problem, groups)
    chosen_count = chosen.group_by(groups).agg(pl.len().cast(pl.Int64).alias("__chosen"))
    joined = (
        negatives.filter(pl.col(_RANK) < config.pairs_per_problem)
        .join(chosen_count, on=groups)
        .with_columns((pl.col(_RANK) % pl.col("__chosen")).alias("__slot"))
        .join(chosen.rename({_RANK: "__slot"}), on=[*groups, "__slot"], suffix="__chosen")
    )
    # With teachers: same, several teachers' pairs compete for the problem's quota: the
    # best-ranked pairs of every teacher come first.
    joined = joined.with_columns(
        pl.struct(_RANK, "trace_id").rank("ordinal").over(problem).alias("__order")
    ).filter(pl.col("__order") <= config.pairs_per_problem)
    pairs = _pair_columns(joined, frame.columns, config)

    counts = _funnel(traces, chosen, wrong, negatives, pairs, config, groups)
    return pairs, counts


def _prepare(frame: pl.DataFrame, config: PreferencePairsConfig) -> pl.DataFrame:
    """The traces with the helper columns: text without its final line, answer key, length, draw."""
    if "completion" in frame.columns:
        text = pl.col("completion").fill_null("")
    else:
        text = pl.concat_str([pl.col(c).fill_null("") for c in ("reasoning", "answer_text") if c in frame.columns],
                             separator="\n")
    body = text.str.strip_chars().str.replace(r"[^\n]*$", "").str.replace_all(r"\s+", " ").str.strip_chars()
    if "extracted_answer" in frame.columns:
        answer = pl.col("extracted_answer")
    else:
        answer = pl.col("answer_text") if "answer_text" in frame.columns else text
    if {"reasoning_tokens", "answer_tokens"} <= set(frame.columns):
        tokens = (pl.col("reasoning_tokens").fill_null(0) + pl.col("answer_tokens").fill_null(0)).cast(pl.Int64)
    else:
        tokens = text.str.len_chars().cast(pl.Int64)
    # sha256, not polars' hash: the draw must not change with the polars version.
    draw = content_hash_expr(pl.lit(str(config.seed)), pl.col("trace_id").cast(pl.String)).alias(_DRAW)
    return frame.with_columns(
        body.alias(_BODY), answer.cast(pl.String).str.replace_all(r"\s+", "").alias(_ANSWER), tokens.alias(_TOKENS),
        draw,
    )


def _rank_negatives(negatives: pl.DataFrame, config: PreferencePairsConfig, problem: str,
                    groups: list[str]) -> pl.DataFrame:
    # How many of the problem's eligible wrong samples (every teacher's) give this answer.
    negatives = negatives.with_columns(pl.len().over(problem, _ANSWER).cast(pl.Int64).alias("rejected_answer_count"))
    if config.negative == "most_common_wrong":
        key = pl.struct(pl.col("rejected_answer_count").neg(), _DRAW)
    elif config.negative == "longest":
        key = pl.struct(pl.col(_TOKENS).neg(), "trace_id")
    else:
        key = pl.struct(_DRAW, "trace_id")
    return negatives.with_columns(key.rank("ordinal").over(groups).cast(pl.Int64).sub(1).alias(_RANK))


def _pair_columns(joined: pl.DataFrame, columns: list[str], config: PreferencePairsConfig) -> pl.DataFrame:
    """One row per pair: problem fields, then each side's trace fields, the pair's id and policy."""
    problem_fields = [pl.col(c) for c in PROBLEM_FIELDS if c in columns]
    if config.group_by not in PROBLEM_FIELDS:
        problem_fields.insert(0, pl.col(config.group_by))
    sides = []
    for field in TRACE_FIELDS:
        if field in columns:
            # A group key (teacher, with teachers: same) is joined on, so it has no __chosen copy.
            chosen_side = f"{field}__chosen" if f"{field}__chosen" in joined.columns else field
            sides += [pl.col(chosen_side).alias(f"chosen_{field}"), pl.col(field).alias(f"rejected_{field}")]
    return joined.select(
        content_hash_expr(pl.col("trace_id__chosen"), pl.col("trace_id")).alias("pair_id"), *problem_fields, *sides,
        pl.col("rejected_answer_count"),
        pl.lit(f"negative={config.negative},chosen={config.chosen},teachers={config.teachers}").alias("pair_policy"),
    ).sort(config.group_by, "pair_id")


def _funnel(traces, chosen, wrong, negatives, pairs, config, groups) -> dict[str, int]:
    problem = config.group_by
    problems = traces[problem].n_unique()
    with_correct = set(chosen[problem].unique().to_list())
    with_negative = set(negatives[problem].unique().to_list())
    paired = set(pairs[problem].unique().to_list())
    return {
        "problems": problems,
        "problems_no_correct": problems - len(with_correct),
        "problems_no_wrong": len(with_correct - with_negative),
        "problems_no_same_teacher": len((with_correct & with_negative) - paired),
        "problems_paired": len(paired),
        "traces_correct": chosen.height,
        "traces_wrong": wrong.height,
        "traces_excluded": traces.height - chosen.height - wrong.height,
        "negatives_final_line_only": wrong.height - negatives.height,
        "pairs": pairs.height,
    }
