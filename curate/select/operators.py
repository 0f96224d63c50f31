"""Row selection: random samples of problems or traces (`sample`), problems by difficulty
(`select_difficulty`, needs `grade`), and k traces per problem by a policy, as open-r1 and
Sky-T1 do (`select_traces`; the rest are rejected with the reason they lost: 'incorrect',
'unverified', 'not_selected')."""

from __future__ import annotations

from typing import Literal

import polars as pl
from polars.expr.whenthen import ChainedThen, Then
from pydantic import Field, model_validator

from curate.core.operator import Filter, OperatorConfig, StepContext, register
from curate.schema import completion_tokens, content_hash_expr
from curate.select import modes  # noqa: F401 - registers `reasoning_modes`
from curate.text import word_ngram_hashes


class SampleConfig(OperatorConfig):
    n: int | None = Field(None, ge=1, description="Keep this many groups (problems by default).")
    fraction: float | None = Field(None, gt=0, le=1, description="Or keep this share of groups.")
    by: str = Field("problem_id", description="Column whose distinct values are sampled.")
    seed: int = Field(0, description="Same seed, same sample, whatever the row order.")

    @model_validator(mode="after")
    def _one_size(self) -> SampleConfig:
        if (self.n is None) == (self.fraction is None):
            raise ValueError("give exactly one of n or fraction")
        return self


@register
class Sample(Filter[SampleConfig]):
    """Keep a seeded random subset of groups (e.g. problems); the rest are rejected
    as 'not_sampled'. The draw ranks a hash of each group key, so it does not depend
    on row order or chunking and a larger n keeps a superset of a smaller one."""

    name = "sample"
    reject_reasons = ("not_sampled",)
    Config = SampleConfig
    scope = "global"

    def input_columns(self) -> set[str]:
        return {self.config.by}

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        key = pl.col(config.by).cast(pl.String)
        groups = frame.select(key.unique()).to_series()
        # sha256, not polars' hash: the sample must not change with the polars version.
        draw = groups.to_frame().select(content_hash_expr(pl.lit(str(config.seed)), pl.col(groups.name))).to_series()
        rank = draw.rank("ordinal")
        if config.n is not None:
            size = config.n
        else:
            assert config.fraction is not None, "SampleConfig's validator requires n or fraction"
            size = round(config.fraction * len(groups))
        chosen = groups.filter(rank <= size)
        return frame.with_columns(
            reject_reason=pl.when(key.is_in(chosen.implode())).then(None).otherwise(pl.lit("not_sampled"))
        )


class SelectDifficultyConfig(OperatorConfig):
    bands: list[str] | None = Field(
        None, description="Keep problems in these bands (e.g. [hard, medium]); null = any band."
    )
    min_pass_rate: float | None = Field(None, ge=0, le=1, description="Keep pass_rate >= this.")
    max_pass_rate: float | None = Field(None, ge=0, le=1, description="Keep pass_rate <= this.")
    min_samples: int = Field(0, ge=0, description="Reject problems graded on fewer verified samples.")


@register
class SelectDifficulty(Filter[SelectDifficultyConfig]):
    """Keep traces of problems in the chosen bands and/or pass-rate range (needs `grade`).
    Reasons: too_few_samples, ungraded, band:<name>, pass_rate_below_min, pass_rate_above_max."""

    name = "select_difficulty"
    reject_reasons = ("too_few_samples", "ungraded", "band:<name>", "pass_rate_below_min", "pass_rate_above_max")
    Config = SelectDifficultyConfig
    scope = "batch"
    reads = ("pass_rate", "band", "n_samples")
    adds = ("reject_reason", "reject_detail")

    def evidence(self) -> dict[str, pl.Expr]:
        return {"band": pl.col("band"), "pass_rate": pl.col("pass_rate"), "n_samples": pl.col("n_samples")}

    def rejects(self, measures: dict[str, pl.Expr]) -> pl.Expr:
        config = self.config
        pass_rate = pl.col("pass_rate")
        checks = [
            (pl.col("n_samples").fill_null(0) < config.min_samples, pl.lit("too_few_samples")),
            (pass_rate.is_null(), pl.lit("ungraded")),
        ]
        if config.bands is not None:
            checks.append((~pl.col("band").is_in(config.bands), pl.lit("band:") + pl.col("band")))
        if config.min_pass_rate is not None:
            checks.append((pass_rate < config.min_pass_rate, pl.lit("pass_rate_below_min")))
        if config.max_pass_rate is not None:
            checks.append((pass_rate > config.max_pass_rate, pl.lit("pass_rate_above_max")))
        expression: Then | ChainedThen = pl.when(checks[0][0]).then(checks[0][1])
        for condition, reason in checks[1:]:
            expression = expression.when(condition).then(reason)
        return expression.otherwise(pl.lit(None, pl.String))

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        missing = {"pass_rate", "band", "n_samples"} - set(frame.columns)
        if missing:
            raise ValueError(f"select_difficulty needs the grade columns {sorted(missing)}: run `grade` first")
        return super().mark(frame, ctx)


_ROW, _TOKENS = "__select_row", "__select_tokens"


class SelectTracesConfig(OperatorConfig):
    policy: Literal["shortest_correct", "diverse", "one_per_teacher", "all_correct"] = Field(
        "shortest_correct",
        description="shortest_correct: the k shortest correct traces; diverse: k correct traces chosen "
        "greedily to be least alike (shortest first); one_per_teacher: each teacher's shortest correct "
        "trace; all_correct: every correct trace.",
    )
    k: int = Field(1, ge=1, description="Traces kept per problem (shortest_correct and diverse).")
    correct_column: str = Field("correct", description="Boolean column set by verification (null = unverified).")
    group_by: str = Field("problem_id", description="Column that identifies a problem.")
    ngram: int = Field(4, ge=1, description="diverse: word n-gram size of the similarity sketch.")
    sketch_size: int = Field(
        64, ge=8, description="diverse: smallest n-gram hashes kept per trace to estimate overlap."
    )


@register
class SelectTraces(Filter[SelectTracesConfig]):
    """Keep k traces per problem by policy; reject the rest with the reason they lost."""

    name = "select_traces"
    reject_reasons = ("unverified", "incorrect", "not_selected")
    Config = SelectTracesConfig
    scope = "global"
    adds = ("reject_reason",)

    def input_columns(self):
        columns = {self.config.correct_column, self.config.group_by, "trace_id", "reasoning_tokens", "answer_tokens"}
        if self.config.policy == "one_per_teacher":
            columns.add("teacher")
        if self.config.policy == "diverse":
            columns.add("completion")
        return columns

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        if config.correct_column not in frame.columns:
            raise ValueError(
                f"select_traces needs column {config.correct_column!r} from verification; "
                f"the table has: {', '.join(frame.columns)}"
            )
        frame = frame.with_row_index(_ROW).with_columns(**{_TOKENS: completion_tokens()})
        correct = pl.col(config.correct_column)
        candidates = frame.filter(correct.fill_null(False))
        chosen = {
            "shortest_correct": lambda: self._shortest(candidates, [config.group_by], config.k),
            "one_per_teacher": lambda: self._shortest(candidates, [config.group_by, "teacher"], 1),
            "all_correct": lambda: candidates[_ROW],
            "diverse": lambda: self._diverse(candidates),
        }[config.policy]()
        return frame.with_columns(
            reject_reason=pl.when(correct.is_null()).then(pl.lit("unverified"))
            .when(~correct).then(pl.lit("incorrect"))
            .when(~pl.col(_ROW).is_in(chosen.implode())).then(pl.lit("not_selected"))
        ).drop(_ROW, _TOKENS)

    @staticmethod
    def _shortest(candidates: pl.DataFrame, keys: list[str], k: int) -> pl.Series:
        rank = pl.struct(_TOKENS, "trace_id").rank("ordinal").over(keys)
        return candidates.filter(rank <= k)[_ROW]

    def _diverse(self, candidates: pl.DataFrame) -> pl.Series:
        """Greedy farthest-point choice: start from the shortest trace, then repeatedly add
        the trace least similar to those already chosen (similarity = overlap of
        bottom-k n-gram hash sketches, a MinHash-style estimate of shared phrasing)."""
        config, group = self.config, self.config.group_by
        sketches = candidates.select(
            _ROW, group,
            sketch=word_ngram_hashes(pl.col("completion"), config.ngram).list.eval(
                pl.element().unique().bottom_k(config.sketch_size)
            ),
        )
        sizes = sketches.select(_ROW, size=pl.col("sketch").list.len())
        members = sketches.explode("sketch").drop_nulls("sketch")
        shared = (
            members.join(members, on=[group, "sketch"], suffix="_other")
            .filter(pl.col(_ROW) != pl.col(f"{_ROW}_other"))
            .group_by(_ROW, f"{_ROW}_other").agg(shared=pl.len())
            .join(sizes, on=_ROW)
            .join(sizes.rename({_ROW: f"{_ROW}_other", "size": "size_other"}), on=f"{_ROW}_other")
            .select(_ROW, f"{_ROW}_other",
                    similarity=pl.col("shared") / (pl.col("size") + pl.col("size_other") - pl.col("shared")))
        )
        pool = candidates.select(_ROW, group, _TOKENS, "trace_id")
        chosen = self._shortest(candidates, [group], 1)
        for _ in range(config.k - 1):
            remaining = pool.filter(~pl.col(_ROW).is_in(chosen.implode()))
            if remaining.is_empty():
                break
            closeness = (
                shared.filter(pl.col(f"{_ROW}_other").is_in(chosen.implode()))
                .group_by(_ROW).agg(closest=pl.col("similarity").max())
            )
            scored = remaining.join(closeness, on=_ROW, how="left").with_columns(pl.col("closest").fill_null(0.0))
            rank = pl.struct("closest", _TOKENS, "trace_id").rank("ordinal").over(group)
            chosen = pl.concat([chosen, scored.filter(rank == 1)[_ROW]])
        return chosen
