"""Rule filters for traces: each one small operator with its own reason, so a recipe
lists the ones it wants and the rejections table says which rule removed which trace.

All measures are polars expressions over the whole chunk; the evidence for a rejection
(the measured value next to its threshold) goes to `reject_detail` as JSON.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl
from pydantic import Field, model_validator

from curate.answers.extract import stated_answer
from curate.answers.normalise import normalise_answer
from curate.core.operator import ConfigT, Filter, OperatorConfig, register
from curate.prune import text as T

DEFAULT_HESITATION_MARKERS = [
    "wait", "hmm", "hold on", "let me double-check", "let me check again", "let me re-check",
    "let me verify", "let me re-examine", "on second thought", "alternatively",
]


class TraceFilter(Filter[ConfigT]):
    """A filter that measures something per trace, rejects above/below a threshold and
    records the measures as evidence (the base counts the rows and tokens it removes)."""

    reads: ClassVar[tuple[str, ...]] = ("reasoning_tokens", "answer_tokens")
    adds: ClassVar[tuple[str, ...]] = ("reject_reason", "reject_detail")


class TextConfig(OperatorConfig):
    column: str = Field("completion", description="Text column the rule looks at.")


# --- no final answer -----------------------------------------------------------------

class AnswerMissingConfig(OperatorConfig):
    patterns: list[str] = Field(
        [r"\\(?:boxed|fbox)\s*\{\s*[^\s}]", r"####\s*\S",
         r"(?i)\b(?:final|correct)\s+answers?\b|\banswers?\s+(?:is|are)\b|\banswer\s*[:：]"],
        description="Regexes; a trace whose final answer text matches none has no final answer.",
    )
    tail_chars: int = Field(
        2000, ge=1,
        description="Search only this many final characters of answer_text "
        "(of the completion when answer_text is empty).",
    )


@register
class AnswerMissingFilter(TraceFilter[AnswerMissingConfig]):
    """Reject traces that end without a recognisable final answer ('no_final_answer')."""

    name = "answer_missing_filter"
    reject_reasons = ("no_final_answer",)
    Config = AnswerMissingConfig
    reads = TraceFilter.reads + ("answer_text", "completion")

    def rejects(self, measures):
        answer = pl.col("answer_text")
        text = pl.when(answer.str.strip_chars().str.len_chars() > 0).then(answer).otherwise(pl.col("completion"))
        searched = text.str.slice(-self.config.tail_chars)
        found = pl.any_horizontal([searched.str.contains(p) for p in self.config.patterns]).fill_null(False)
        return pl.when(~found).then(pl.lit("no_final_answer"))


# --- truncated -------------------------------------------------------------------------

class TruncationConfig(OperatorConfig):
    think_tags: list[tuple[str, str]] = Field(
        [("<think>", "</think>"), ("<|begin_of_thought|>", "<|end_of_thought|>"),
         ("<|begin_of_solution|>", "<|end_of_solution|>")],
        description="(open, close) tag pairs; more opens than closes in the completion means it was cut off.",
    )


@register
class TruncationFilter(TraceFilter[TruncationConfig]):
    """Reject traces cut off by the token limit ('truncated'): finish_reason 'length', or
    a thought/solution block opened and never closed."""

    name = "truncation_filter"
    reject_reasons = ("truncated",)
    Config = TruncationConfig
    reads = TraceFilter.reads + ("completion", "finish_reason")

    def evidence(self):
        text = pl.col("completion")
        unclosed = [
            pl.when(text.str.count_matches(open_tag, literal=True) > text.str.count_matches(close_tag, literal=True))
            .then(pl.lit(open_tag))
            for open_tag, close_tag in self.config.think_tags
        ]
        return {"finish_reason": pl.col("finish_reason"), "unclosed_tag": pl.coalesce(unclosed)}

    def rejects(self, measures):
        cut = (measures["finish_reason"] == "length") | measures["unclosed_tag"].is_not_null()
        return pl.when(cut).then(pl.lit("truncated"))


# --- repetition loops ------------------------------------------------------------------

class RepetitionConfig(TextConfig):
    ngram: int = Field(
        20, ge=2, description="Words per n-gram; long n-grams repeat only in loops, not in normal phrasing."
    )
    max_ngram_share: float = Field(
        0.3, ge=0, le=1, description="Reject when more than this share of word n-grams repeat an earlier one."
    )
    min_line_chars: int = Field(
        20, ge=1, description="Lines shorter than this ('Wait.', '') are not counted as repeated lines."
    )
    max_line_share: float = Field(
        0.4, ge=0, le=1, description="Reject when more than this share of lines repeat an earlier line."
    )


@register
class RepetitionFilter(TraceFilter[RepetitionConfig]):
    """Reject traces stuck in loops ('repetition'): too many repeated word n-grams or
    repeated lines (Data-Juicer's word_repetition_filter idea, on hashed n-grams)."""

    name = "repetition_filter"
    reject_reasons = ("repetition",)
    Config = RepetitionConfig

    def input_columns(self):
        return set(self.reads) | {self.config.column}

    def evidence(self):
        text = pl.col(self.config.column)
        return {
            "ngram_share": T.word_ngram_repeat_share(text, self.config.ngram).round(4),
            "line_share": T.repeated_line_share(text, self.config.min_line_chars).round(4),
        }

    def rejects(self, measures):
        looping = (measures["ngram_share"] > self.config.max_ngram_share) | (
            measures["line_share"] > self.config.max_line_share
        )
        return pl.when(looping).then(pl.lit("repetition"))


# --- language mixing -------------------------------------------------------------------

class LanguageMixConfig(TextConfig):
    scripts: list[str] = Field(
        ["Latin", "Greek"], description="Unicode scripts expected in the text (Greek for math symbols)."
    )
    max_share: float = Field(
        0.02, ge=0, le=1, description="Reject when more than this share of characters are letters of other scripts."
    )


@register
class LanguageMixFilter(TraceFilter[LanguageMixConfig]):
    """Reject traces that drift into other scripts ('language_mix'), e.g. a teacher
    switching to Chinese mid-reasoning."""

    name = "language_mix_filter"
    reject_reasons = ("language_mix",)
    Config = LanguageMixConfig

    def input_columns(self):
        return set(self.reads) | {self.config.column}

    def evidence(self):
        return {"foreign_share": T.foreign_char_share(pl.col(self.config.column), self.config.scripts).round(4)}

    def rejects(self, measures):
        return pl.when(measures["foreign_share"] > self.config.max_share).then(pl.lit("language_mix"))


# --- length bounds -------------------------------------------------------------------------

class LengthConfig(OperatorConfig):
    part: str = Field("completion", pattern="^(completion|reasoning|answer)$",
                      description="What to measure: 'completion' (reasoning + answer), 'reasoning' or 'answer' tokens.")
    min_tokens: int = Field(16, ge=0, description="Reject shorter traces as 'too_short'.")
    max_tokens: int | None = Field(16384, ge=1, description="Reject longer traces as 'too_long' (null: no limit).")

    @model_validator(mode="after")
    def _ordered(self) -> LengthConfig:
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError("max_tokens must be >= min_tokens")
        return self


@register
class LengthFilter(TraceFilter[LengthConfig]):
    """Reject traces outside token bounds ('too_short' / 'too_long')."""

    name = "length_filter"
    reject_reasons = ("too_short", "too_long")
    Config = LengthConfig

    def evidence(self):
        tokens = {
            "completion": T.completion_tokens(),
            "reasoning": pl.col("reasoning_tokens").cast(pl.Int64),
            "answer": pl.col("answer_tokens").cast(pl.Int64),
        }[self.config.part]
        return {"tokens": tokens}

    def rejects(self, measures):
        tokens = measures["tokens"]
        too_long = tokens > self.config.max_tokens if self.config.max_tokens is not None else pl.lit(False)
        return (
            pl.when(tokens < self.config.min_tokens).then(pl.lit("too_short"))
            .when(too_long).then(pl.lit("too_long"))
        )


# --- hesitation density ----------------------------------------------------------------

class HesitationConfig(TextConfig):
    markers: list[str] = Field(DEFAULT_HESITATION_MARKERS, min_length=1,
                               description="Hesitation markers, matched as whole words, case-insensitive.")
    max_per_1k_tokens: float = Field(
        15.0, gt=0, description="Reject above this many markers per 1000 completion tokens."
    )


@register
class HesitationFilter(TraceFilter[HesitationConfig]):
    """Reject traces dense with hesitation ('hesitation'): markers such as 'wait' or
    'let me double-check' per 1000 tokens above a threshold."""

    name = "hesitation_filter"
    reject_reasons = ("hesitation",)
    Config = HesitationConfig

    def input_columns(self):
        return set(self.reads) | {self.config.column}

    def evidence(self):
        count = pl.col(self.config.column).str.count_matches(T.marker_pattern(self.config.markers))
        tokens = T.completion_tokens()
        return {
            "hesitations": count,
            "per_1k_tokens": pl.when(tokens > 0).then(count * 1000 / tokens).otherwise(0.0).round(2),
        }

    def rejects(self, measures):
        return pl.when(measures["per_1k_tokens"] > self.config.max_per_1k_tokens).then(pl.lit("hesitation"))

    def count_extra(self, measured, ctx):
        counts = measured.select(
            before=pl.col(self.measure_column("hesitations")).sum(),
            after=pl.col(self.measure_column("hesitations")).filter(pl.col("reject_reason").is_null()).sum(),
        ).row(0, named=True)
        ctx.count("hesitations_before", int(counts["before"] or 0))
        ctx.count("hesitations_after", int(counts["after"] or 0))


# --- answer vs the reasoning's last result ----------------------------------------------

class AnswerConsistencyConfig(OperatorConfig):
    use_math_verify: bool = Field(
        True, description="Compare non-numeric answers with math-verify; without it only numeric mismatches count.",
    )
    timeout_seconds: int = Field(5, ge=1, description="math-verify timeout per comparison.")
    workers: int = Field(2, ge=1, description="math-verify worker processes.")
    tail_chars: int = Field(
        3000, ge=1, description="The reasoning's last stated result is looked for in this many final characters."
    )


@register
class AnswerConsistencyFilter(TraceFilter[AnswerConsistencyConfig]):
    """Reject traces whose final answer contradicts the last result the reasoning stated
    ('answer_inconsistent'). Only clear contradictions count: when either side is
    missing or the comparison cannot decide, the trace is kept."""

    name = "answer_consistency_filter"
    reject_reasons = ("answer_inconsistent",)
    Config = AnswerConsistencyConfig
    reads = TraceFilter.reads + ("reasoning", "answer_text")

    def evidence(self):
        return {
            "reasoning_result": stated_answer(pl.col("reasoning").str.slice(-self.config.tail_chars)),
            "final_answer": stated_answer(pl.col("answer_text").str.slice(-self.config.tail_chars)),
        }

    def rejects(self, measures):
        # Normalised spellings that differ are only candidates; `refine` confirms them.
        stated, final = (normalise_answer(measures[k]) for k in ("reasoning_result", "final_answer"))
        return pl.when(stated != final).then(pl.lit("answer_inconsistent"))

    def refine(self, marked):
        from curate.answers.math import decide
        from curate.answers.normalise import choice_of, is_text_answer, presented

        candidates = marked.with_row_index("__row").filter(pl.col("reject_reason").is_not_null())
        measured = (self.measure_column("reasoning_result"), self.measure_column("final_answer"))
        rows = candidates.select("__row", *measured).rows()
        confirmed, undecided = [], []
        for row, stated, final in rows:
            letters = choice_of(presented(stated)), choice_of(presented(final))
            if (letters[0] is None) != (letters[1] is None):
                continue  # a letter against a number (multiple choice): nothing to compare
            if None in letters and is_text_answer(presented(final)):
                continue  # "June 20" against a 20 in the reasoning: not comparable
            if (verdict := decide(final, stated)) is not None:
                if verdict.correct is False:
                    confirmed.append(row)
                continue
            numbers = (_as_number(stated), _as_number(final))
            if None not in numbers:
                if abs(numbers[0] - numbers[1]) > 1e-9 * max(1.0, abs(numbers[1])):
                    confirmed.append(row)
            else:
                undecided.append((row, stated, final))
        if undecided and self.config.use_math_verify:
            from curate.answers.math import verify_pairs

            verdicts = verify_pairs([(final, stated) for _, stated, final in undecided],
                                    timeout_s=self.config.timeout_seconds, workers=self.config.workers)
            # Only a definite "differ" rejects; a timeout or parse failure keeps the trace.
            confirmed += [row for (row, _, _), verdict in zip(undecided, verdicts, strict=True)
                          if verdict.correct is False]
        keep_reason = pl.int_range(pl.len()).is_in(pl.Series(confirmed, dtype=pl.UInt32).implode())
        return marked.with_columns(reject_reason=pl.when(keep_reason).then(pl.col("reject_reason")))


def _as_number(answer: str) -> float | None:
    try:
        return float(answer.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None
