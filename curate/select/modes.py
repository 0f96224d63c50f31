"""When to think: each problem gets a reasoning mode from its graded difficulty, and the
trace that fits the mode (`reasoning_modes`, needs `verify`, and `grade` for the rules that
read difficulty).

Modes: 'long' (the longest correct trace within the long budget), 'short' (the shortest
correct trace, within the short budget) and 'no_think' (the final answer text alone, within
its budget; publish writes it without the reasoning block). Policies: one mode for every
problem ('long', 'short', 'no_think'), 'matched' (easy problems, by pass rate or band, get
`easy_mode`, the rest `hard_mode`) or 'mix' (a fixed share of problems long, the rest
short: 0.2 is Mix-Long's 1:4). The chosen mode is kept in `reasoning_mode`; rejected rows
say why: unverified, incorrect, ungraded, no_fit:<mode> (no correct trace of the problem
fits the mode's budget), outside_budget:<mode> (this trace does not, another does) or
not_selected:<mode> (another fitting trace of the problem was chosen).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
from pydantic import Field, model_validator

from curate.core.operator import Filter, OperatorConfig, StepContext, register
from curate.schema import REASONING_MODES, content_hash_expr
from curate.schema import ReasoningMode as Mode

_MODE, _TOKENS, _FITS = "__modes_mode", "__modes_tokens", "__modes_fits"


class ReasoningModesConfig(OperatorConfig):
    policy: Literal["long", "short", "no_think", "matched", "mix"] = Field(
        "matched",
        description="long/short/no_think: that mode for every problem; matched: easy problems get easy_mode, "
        "the others hard_mode; mix: long_share of the problems long, the rest short.",
    )
    easy_pass_rate: float = Field(
        0.7, ge=0, le=1, description="matched: a problem is easy when its pass_rate is at least this."
    )
    band_modes: dict[str, Mode] | None = Field(
        None, description="matched: mode by grade band (e.g. {easy: no_think, hard: long}); bands not listed "
        "follow easy_pass_rate.",
    )
    easy_mode: Mode = Field("short", description="matched: the mode of easy problems.")
    hard_mode: Mode = Field("long", description="matched: the mode of the other problems.")
    long_share: float = Field(
        0.2, ge=0, le=1, description="mix: share of problems given long traces (0.2 = 1 long : 4 short)."
    )
    mix_by: Literal["random", "difficulty"] = Field(
        "random", description="mix: which problems get long traces: a seeded random draw, or the hardest (lowest "
        "pass_rate) first.",
    )
    seed: int = Field(0, description="mix (random): same seed, same draw, whatever the row order.")
    long_min_tokens: int = Field(
        0, ge=0, description="long: a trace needs at least this many tokens (reasoning + answer)."
    )
    long_max_tokens: int | None = Field(
        None, ge=1, description="long: budget, at most this many tokens (reasoning + answer); null = no cap."
    )
    short_max_tokens: int = Field(
        1024, ge=1, description="short: budget, at most this many tokens (reasoning + answer)."
    )
    no_think_max_tokens: int = Field(
        512, ge=1, description="no_think: budget, at most this many answer tokens (the reasoning is left out)."
    )
    correct_column: str = Field("correct", description="Boolean column set by verification (null = unverified).")
    group_by: str = Field("problem_id", description="Column that identifies a problem.")

    @model_validator(mode="after")
    def _long_fits(self) -> ReasoningModesConfig:
        if self.long_max_tokens is not None and self.long_max_tokens < self.long_min_tokens:
            raise ValueError("long_max_tokens is below long_min_tokens: no trace could be long")
        return self

    def reads_difficulty(self) -> bool:
        return self.policy == "matched" or (self.policy == "mix" and self.mix_by == "difficulty")


@register
class ReasoningModes(Filter[ReasoningModesConfig]):
    """Give each problem a reasoning mode from its difficulty and keep the one trace that fits it."""

    name = "reasoning_modes"
    reject_reasons = ("unverified", "incorrect", "ungraded", "no_fit:<mode>", "outside_budget:<mode>",
                      "not_selected:<mode>")
    Config = ReasoningModesConfig
    scope = "global"
    adds: ClassVar[tuple[str, ...]] = ("reasoning_mode", "reject_reason", "reject_detail")

    def input_columns(self) -> set[str]:
        config = self.config
        columns = {config.correct_column, config.group_by, "trace_id", "reasoning_tokens", "answer_tokens",
                   "answer_text"}
        if config.reads_difficulty():
            columns |= {"pass_rate", "band"} if config.band_modes else {"pass_rate"}
        return columns

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        missing = self.input_columns() - set(frame.columns)
        if missing:
            hint = " (run `grade` first)" if {"pass_rate", "band"} & missing else ""
            raise ValueError(f"reasoning_modes needs column(s) {', '.join(sorted(missing))}{hint}; "
                             f"the table has: {', '.join(frame.columns)}")
        measured = frame.with_columns(**{_MODE: self._mode()}).with_columns(**{_TOKENS: _mode_tokens()})
        measured = measured.with_columns(**{_FITS: self._fits()})
        marked = measured.with_columns(reject_reason=self._reason(), reasoning_mode=pl.col(_MODE))
        marked = marked.with_columns(reject_detail=pl.when(pl.col("reject_reason").is_not_null()).then(
            self._detail()))
        for mode, kept in marked.filter(pl.col("reject_reason").is_null()).group_by("reasoning_mode").len().rows():
            ctx.count(f"mode_{mode}", kept)
        return marked.drop(_MODE, _TOKENS, _FITS)

    def _mode(self) -> pl.Expr:
        """The problem's mode (null when the policy needs a difficulty the problem lacks)."""
        config = self.config
        if config.policy in ("long", "short", "no_think"):
            return pl.lit(config.policy, pl.String)
        if config.policy == "matched":
            easy = pl.col("pass_rate") >= config.easy_pass_rate
            by_rate = pl.when(easy).then(pl.lit(config.easy_mode)).otherwise(pl.lit(config.hard_mode))
            by_band = pl.col("band").replace_strict(config.band_modes or {}, default=None, return_dtype=pl.String)
            mode = by_band.fill_null(by_rate) if config.band_modes else by_rate
            return pl.when(pl.col("pass_rate").is_null()).then(pl.lit(None, pl.String)).otherwise(mode)
        return self._mix_mode()

    def _mix_mode(self) -> pl.Expr:
        """long for the first long_share of the problems in draw order (a dense rank counts problems)."""
        config = self.config
        group = pl.col(config.group_by)
        # The share is of the problems that can be kept (some correct trace), so the kept mix is the ratio.
        eligible = pl.col(config.correct_column).fill_null(False).any().over(config.group_by)
        draw = content_hash_expr(pl.lit(str(config.seed)), group.cast(pl.String))
        order = pl.struct(pl.col("pass_rate"), draw) if config.mix_by == "difficulty" else draw
        long_problems = (group.filter(eligible).n_unique() * config.long_share).round().cast(pl.Int64)
        in_long_share = pl.when(eligible).then(order).rank("dense") <= long_problems
        mode = pl.when(in_long_share).then(pl.lit("long")).otherwise(pl.lit("short"))
        if config.mix_by == "difficulty":
            return pl.when(pl.col("pass_rate").is_null()).then(pl.lit(None, pl.String)).otherwise(mode)
        return mode

    def _fits(self) -> pl.Expr:
        """The row is correct and within its mode's budget."""
        config = self.config
        tokens, mode = pl.col(_TOKENS), pl.col(_MODE)
        long_fits = tokens >= config.long_min_tokens
        if config.long_max_tokens is not None:
            long_fits &= tokens <= config.long_max_tokens
        answer_present = pl.col("answer_text").fill_null("").str.strip_chars() != ""
        within = (
            pl.when(mode == "long").then(long_fits)
            .when(mode == "short").then(tokens <= config.short_max_tokens)
            .when(mode == "no_think").then(answer_present & (tokens <= config.no_think_max_tokens))
            .otherwise(pl.lit(False))
        )
        return pl.col(config.correct_column).fill_null(False) & within

    def _reason(self) -> pl.Expr:
        config = self.config
        group, correct, mode, fits = config.group_by, pl.col(config.correct_column), pl.col(_MODE), pl.col(_FITS)
        # Among the rows that fit, long takes the longest trace, short and no_think the shortest.
        preference = pl.when(mode == "long").then(-pl.col(_TOKENS)).otherwise(pl.col(_TOKENS))
        rank = pl.struct(~fits, preference, pl.col("trace_id")).rank("ordinal").over(group)
        return (
            pl.when(correct.is_null()).then(pl.lit("unverified"))
            .when(~correct).then(pl.lit("incorrect"))
            .when(mode.is_null()).then(pl.lit("ungraded"))
            .when(~fits.any().over(group)).then(pl.lit("no_fit:") + mode)
            .when(~fits).then(pl.lit("outside_budget:") + mode)
            .when(rank != 1).then(pl.lit("not_selected:") + mode)
            .otherwise(pl.lit(None, pl.String))
        )

    def _detail(self) -> pl.Expr:
        config = self.config
        budget = {"long": config.long_max_tokens, "short": config.short_max_tokens,
                  "no_think": config.no_think_max_tokens}
        fields = [
            pl.col(_MODE).alias("mode"),
            pl.col(_TOKENS).alias("tokens"),
            pl.col(_MODE).replace_strict(budget, default=None, return_dtype=pl.Int64).alias("budget"),
        ]
        if "pass_rate" in self.input_columns():
            fields.append(pl.col("pass_rate"))
        return pl.struct(fields).struct.json_encode()

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        kept = {mode: int(metrics[f"mode_{mode}"]) for mode in REASONING_MODES
                if metrics.get(f"mode_{mode}")}
        return "modes: " + ", ".join(f"{mode} {count}" for mode, count in kept.items()) if kept else None


def _mode_tokens() -> pl.Expr:
    """Tokens a row spends in its mode: the answer alone for no_think, reasoning + answer otherwise."""
    answer = pl.col("answer_tokens").cast(pl.Int64)
    return pl.when(pl.col(_MODE) == "no_think").then(answer).otherwise(
        pl.col("reasoning_tokens").cast(pl.Int64) + answer)
