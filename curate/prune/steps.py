"""Structural pruning: cut a correct trace after the first step that reaches the
verified answer and keep a short conclusion (the Sky-T1-Flash / concise-reasoning idea:
what follows the first correct result is mostly re-checking and hesitation).

A step counts only when it states the answer without hedging ("seems to be A? But let's
double-check" is no cut point). The cut is re-checked from the cut reasoning itself: the
value the step where it now stops concludes must verify equal to the reference; otherwise
the original is kept untouched.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field

from curate.answers.extract import last_boxed_expr, last_group, stated_answer
from curate.answers.normalise import normalise_answer
from curate.core.operator import Operator, OperatorConfig, StepContext, register
from curate.prune import text as T
from curate.prune.filters import DEFAULT_HESITATION_MARKERS

_ROW = "__steps_row"
# A step reaches the answer when it concludes (_CONCLUSION) and names the answer as a
# result (_RESULT_CUE right before it: "so x = 3", "the answer is 3", "\boxed{3}"), not
# when the number appears in passing or in an equation being set up ("n + n+1 = 27").
# _RESULT_CUE is matched in text whose spaces are removed, hence no word boundaries.
_CONCLUSION = r"(?i)\b(?:so|therefore|thus|hence|answer|boxed|final|conclude|conclusion)\b"
_RESULT_CUE = r"(?:=|is|are|be|equals|answer:?|boxed\{)"
# A step that hedges does not state the answer: "seems to be A? But let's double-check".
HEDGE = (
    r"(?i)\?|\b(?:seems?|appears?|might|maybe|perhaps|probably|possibly|likely|guess|suppose|assume|"
    r"not sure|i think|double[- ]check|let me (?:check|verify|re-?check|confirm)|let's (?:check|verify|double)|"
    r"wait|hmm|but|however|if|let's|let us)\b"
    r"|:\s*$"  # a step ending in ":" introduces more work
)
# The value a step concludes with: after its last "=" / "is" / "answer:".
_CONCLUDED = r"(?i)(?:=|\bis\b|\bequals\b|answer:?)\s*\$?\s*([^\s$,;]+)"


class PruneStepsConfig(OperatorConfig):
    split_pattern: str = Field(
        r"\n[ \t]*\n", description="Regex between reasoning steps (default: blank lines, i.e. paragraphs)."
    )
    conclusion_steps: int = Field(
        1, ge=0, description="Last steps of the original reasoning kept after the cut, as its conclusion."
    )
    min_removed_share: float = Field(
        0.1, ge=0, lt=1, description="Leave a trace alone unless the cut removes at least this share of its reasoning."
    )
    correct_column: str = Field("correct", description="Only traces verified correct here are pruned.")
    markers: list[str] = Field(DEFAULT_HESITATION_MARKERS, description="Hesitation markers counted before/after.")
    workers: int = Field(2, ge=1, description="math-verify processes for re-checking changed answers.")


@register
class PruneSteps(Operator[PruneStepsConfig]):
    """Cut verified-correct traces after the first step that states the verified answer,
    keeping the last `conclusion_steps` steps; re-checks the answer. Rewrites reasoning,
    completion and reasoning_tokens (estimated from the share of characters kept), and
    records reasoning_tokens_before and pruned_by."""

    name = "prune_steps"
    Config = PruneStepsConfig
    reads = ("reasoning", "completion", "answer_text", "reference_answer", "reasoning_tokens")
    adds = ("reasoning_tokens_before", "pruned_by")

    def input_columns(self):
        return set(self.reads) | {self.config.correct_column}

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        if config.correct_column not in frame.columns:
            raise ValueError(f"prune_steps needs column {config.correct_column!r} from verification")
        frame = frame.with_row_index(_ROW)
        cut = self._cut(frame.filter(pl.col(config.correct_column).fill_null(False)))
        cut = self._recheck(frame, cut)
        pruned = frame.join(cut, on=_ROW, how="left")
        changed = pl.col("new_reasoning").is_not_null()
        old_chars = pl.col("reasoning").str.len_chars()
        estimate = (pl.col("reasoning_tokens") * pl.col("new_reasoning").str.len_chars() / old_chars).round()
        result = pruned.with_columns(
            completion=pl.when(changed).then(_replace_reasoning()).otherwise(pl.col("completion")),
            reasoning=pl.coalesce("new_reasoning", "reasoning"),
            reasoning_tokens=pl.when(changed).then(estimate.cast(pl.Int32)).otherwise(pl.col("reasoning_tokens")),
            reasoning_tokens_before=existing_column(frame, "reasoning_tokens_before", pl.Int32).fill_null(
                pl.when(changed).then(pl.col("reasoning_tokens"))
            ),
            pruned_by=append_marker(frame, changed, self.name),
        )
        self._count(frame, result, ctx)
        return result.drop(_ROW, "new_reasoning")

    def _cut(self, eligible: pl.DataFrame) -> pl.DataFrame:
        """(row, new_reasoning) for traces with a step that states the answer early."""
        config = self.config
        answers = [
            normalise_answer(pl.col("reference_answer")),
            normalise_answer(stated_answer(pl.col("answer_text"))),
        ]
        alternatives = pl.concat_list([a.str.escape_regex() for a in answers]).list.eval(
            pl.element().filter(pl.element().str.len_chars() > 0)
        ).list.unique().list.join("|")
        # The answer must end at a boundary: "=3" is not "=30", but "=3." is fine.
        pattern = pl.concat_str(
            pl.lit(_RESULT_CUE + r"\(?(?:"), alternatives, pl.lit(r")(?:$|[^0-9A-Za-z.]|\.(?:$|[^0-9]))")
        )
        steps = (
            eligible.select(
                _ROW,
                pattern=pl.when(alternatives.str.len_chars() > 0).then(pattern),
                step=pl.col("reasoning").str.replace_all(config.split_pattern, "\x00").str.split("\x00"),
            )
            .drop_nulls("pattern")
            .with_columns(step_count=pl.col("step").list.len())
            .explode("step")
            .with_columns(index=pl.int_range(pl.len()).over(_ROW))
        )
        hits = steps.with_columns(
            hit=pl.col("step").str.contains(_CONCLUSION)
            & ~pl.col("step").str.contains(HEDGE)
            & normalise_answer(pl.col("step")).str.contains(pl.col("pattern"))
        )
        first_hit = pl.col("index").filter(pl.col("hit")).min().over(_ROW)
        conclusion_start = pl.col("step_count") - config.conclusion_steps
        kept = hits.filter(
            first_hit.is_not_null()
            & (first_hit + 1 < conclusion_start)
            & ((pl.col("index") <= first_hit) | (pl.col("index") >= conclusion_start))
        )
        return kept.group_by(_ROW, maintain_order=True).agg(
            new_reasoning=pl.col("step").str.join("\n\n"),
            cut_step=pl.col("step").filter(pl.col("index") == first_hit).first(),
        )

    def _recheck(self, frame: pl.DataFrame, cut: pl.DataFrame) -> pl.DataFrame:
        """Keep only cuts that remove enough and whose cut point concludes an answer that
        is the reference: the value the step where the reasoning now stops states (its
        box, its "the answer is", else its last "= X"), checked like verify checks. A final
        answer must still be stated after the cut point (kept conclusion or answer text)."""
        from curate.answers.extract import answer_is, last_boxed
        from curate.answers.math import verify_pairs

        candidates = frame.join(cut, on=_ROW).filter(
            pl.col("new_reasoning").str.len_chars()
            <= (1 - self.config.min_removed_share) * pl.col("reasoning").str.len_chars()
        ).filter(
            # The completion must contain the reasoning verbatim, once, to be rebuilt.
            pl.col("completion").str.split(pl.col("reasoning")).list.len() == 2
        ).with_columns(concluded=pl.coalesce(
            last_boxed_expr(pl.col("cut_step")), last_group(pl.col("cut_step"), _CONCLUDED).str.strip_chars_end(".")
        ))
        checks = []
        for row, reference, step, concluded, answer_text, new_reasoning in candidates.select(
            _ROW, "reference_answer", "cut_step", "concluded", "answer_text", "new_reasoning"
        ).iter_rows():
            answer = last_boxed(step) or answer_is(step) or concluded
            # The final answer must still be stated after the cut point: in the answer text
            # or in the kept conclusion steps.
            after_cut = new_reasoning.split(step, 1)[-1] + "\n\n" + (answer_text or "")
            if reference and answer and (last_boxed(after_cut) or answer_is(after_cut)):
                checks.append((row, reference, answer))
        verdicts = verify_pairs([(r, a) for _, r, a in checks], workers=self.config.workers)
        passed = pl.Series([row for (row, _, _), v in zip(checks, verdicts, strict=True) if v.correct], dtype=pl.UInt32)
        return cut.filter(pl.col(_ROW).is_in(passed.implode())).drop("cut_step")

    def _count(self, before: pl.DataFrame, after: pl.DataFrame, ctx: StepContext) -> None:
        hesitation = T.marker_pattern(self.config.markers)
        totals = lambda frame: frame.select(  # noqa: E731
            tokens=pl.col("reasoning_tokens").cast(pl.Int64).sum(),
            hesitations=pl.col("reasoning").str.count_matches(hesitation).sum(),
        ).row(0, named=True)
        old, new = totals(before), totals(after)
        ctx.count("traces_pruned", after.filter(pl.col("new_reasoning").is_not_null()).height)
        ctx.count("tokens_removed", int((old["tokens"] or 0) - (new["tokens"] or 0)))
        ctx.count("hesitations_before", int(old["hesitations"] or 0))
        ctx.count("hesitations_after", int(new["hesitations"] or 0))


def _replace_reasoning() -> pl.Expr:
    """The completion with its (single) reasoning occurrence replaced by new_reasoning."""
    parts = pl.col("completion").str.split(pl.col("reasoning"))
    return pl.concat_str(parts.list.first(), pl.col("new_reasoning"), parts.list.last())


def existing_column(frame: pl.DataFrame, column: str, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """The column if the frame has it, else nulls of `dtype`."""
    return pl.col(column) if column in frame.columns else pl.lit(None, dtype)


def append_marker(frame: pl.DataFrame, changed: pl.Expr, marker: str) -> pl.Expr:
    """pruned_by with `marker` appended where this operator changed the row."""
    previous = existing_column(frame, "pruned_by", pl.String)
    appended = pl.when(previous.is_null()).then(pl.lit(marker)).otherwise(pl.format("{},{}", previous, pl.lit(marker)))
    return pl.when(changed).then(appended).otherwise(previous)
