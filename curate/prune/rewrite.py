"""LLM rewriting: a teacher shortens a trace's reasoning, and the rewrite is re-verified.

The rewriter is an ordinary `generate` teacher (any backend), run through the same
teacher engine as `generate` (`curate.llm.engine`), so its requests share the response
cache, budgets and metrics of generation: a rerun or a resumed run never sends a rewrite request twice.

A rewrite replaces the reasoning only when it still states the trace's final answer
(same extraction as `verify`; math-verify when the spellings differ) and is shorter.
Otherwise the original stays, and `rewrite_status` says why; rows are never dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import Field, model_validator

from curate.answers.extract import DEFAULT_METHODS, ExtractionMethod
from curate.core.operator import Operator, OperatorConfig, StepContext, register
from curate.llm.config import TeacherConfig
from curate.prune import text as T
from curate.prune.filters import DEFAULT_HESITATION_MARKERS
from curate.prune.steps import append_marker, existing_column
from curate.schema import PROBLEM_COLUMNS

_ROW = "__rewrite_row"
_PROBLEM_NAMES = [c.name for c in PROBLEM_COLUMNS]

_INSTRUCTION = (
    "You edit worked solutions. Rewrite the given {part} as briefly as possible: remove repetition, "
    "restatements, hesitation (\"wait\", \"hmm\", re-checks that change nothing) and abandoned "
    "attempts. Keep every decisive step and calculation, and end by stating the same final answer{form}. "
    "Reply with the rewritten {part} only."
)
DEFAULT_PROMPTS = {
    "reasoning": {
        "system": _INSTRUCTION.format(part="reasoning", form=""),
        "user": "Problem:\n{problem}\n\nReasoning:\n{reasoning}\n\nFinal answer:\n{answer_text}",
    },
    "answer_text": {
        "system": _INSTRUCTION.format(part="solution", form=" in the same format"),
        "user": "Problem:\n{problem}\n\nSolution:\n{answer_text}",
    },
}
# Per rewritten part: its token count column and where the count before the first
# shortening is kept.
TOKENS = {"reasoning": "reasoning_tokens", "answer_text": "answer_tokens"}
TOKENS_BEFORE = {"reasoning": "reasoning_tokens_before", "answer_text": "answer_tokens_before"}

class RewriteConfig(OperatorConfig):
    teacher: TeacherConfig = Field(
        description="The rewriter: a `generate` teacher (any backend; shares generation's response "
        "cache). `name` defaults to 'rewriter', `prompt` to a shorten-and-keep-every-decisive-step "
        "template for the chosen `text`, temperature to 0; sampling.n must be 1. Text after the "
        "rewriter's own reasoning end marker (if any) is the rewrite."
    )
    text: Literal["reasoning", "answer_text"] = Field(
        "reasoning",
        description="Part rewritten: 'reasoning' (inside <think>), or 'answer_text' (the worked solution "
        "of a teacher that writes no reasoning markers, whose reasoning column is empty).",
    )
    only_correct: bool = Field(True, description="Rewrite only traces verified correct (correct_column true).")
    correct_column: str = Field("correct", description="Column holding the verification result.")
    min_tokens: int = Field(0, ge=0, description="Rewrite only traces whose `text` has at least this many tokens.")
    min_removed_share: float = Field(
        0.1, ge=0, lt=1,
        description="Accept a rewrite only if it removes at least this share of the text's characters.",
    )
    methods: list[ExtractionMethod] = Field(
        list(DEFAULT_METHODS), description="Answer extractors (as in verify) applied to the original and the rewrite."
    )
    keep_format: bool = Field(
        False,
        description="Also require the rewrite to state its answer the way the original's final answer "
        "text does (same extraction method: boxed stays boxed, '#### N' stays '#### N'); for text: answer_text.",
    )
    markers: list[str] = Field(DEFAULT_HESITATION_MARKERS, description="Hesitation markers counted before/after.")
    workers: int = Field(2, ge=1, description="math-verify processes when answer spellings differ.")

    @model_validator(mode="before")
    @classmethod
    def _teacher_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("teacher"), dict):
            prompt = DEFAULT_PROMPTS.get(data.get("text", "reasoning"), DEFAULT_PROMPTS["reasoning"])
            teacher = {"name": "rewriter", "prompt": prompt, **data["teacher"]}
            teacher["sampling"] = {"temperature": 0.0, **teacher.get("sampling", {})}
            data = {**data, "teacher": teacher}
        return data

    @model_validator(mode="after")
    def _one_sample(self) -> RewriteConfig:
        if self.teacher.sampling.n != 1:
            raise ValueError(
                f"rewrite_traces: teacher.sampling.n must be 1 (one rewrite per trace), got {self.teacher.sampling.n}"
            )
        if "regex" in self.methods:
            raise ValueError("rewrite_traces: extraction method 'regex' is not supported here (it needs a pattern)")
        return self


@register
class RewriteTraces(Operator[RewriteConfig]):
    """Have a teacher rewrite selected traces' reasoning (or solution text) shorter,
    re-verify the answer, and keep the rewrite only if the answer survives and it is
    shorter. Sets rewrite_status (rewritten, skipped, rejected:answer_lost,
    rejected:format_lost, rejected:no_gain, rejected:truncated, failed:<generation reason>); on success replaces
    the text, completion and its token count (scaled by the share of characters kept) and
    records the count before and pruned_by. Rows are never dropped."""

    name = "rewrite_traces"
    Config = RewriteConfig
    scope = "batch"
    reads = ("completion", "answer_text", "reference_answer", "domain")
    default_chunk_size = 512  # as generate: each chunk's checkpoint comes often
    code_modules = ("curate.llm.engine",)  # the rewrites come from the teacher engine

    def input_columns(self) -> set[str]:
        config = self.config
        columns = set(self.reads) | set(_PROBLEM_NAMES) | config.teacher.prompt.fields()
        columns |= {config.text, TOKENS[config.text]}
        return columns | ({config.correct_column} if config.only_correct else set())

    def output_columns(self) -> set[str]:
        return {"rewrite_status", "pruned_by", TOKENS_BEFORE[self.config.text]}

    def resources(self) -> dict[str, float]:
        """The GPUs its teacher needs on a Ray actor, as for `generate`."""
        from curate.llm.engine import ray_resources

        return ray_resources([self.config.teacher])

    def setup(self, ctx: StepContext) -> None:
        from curate.answers.extract import answer_extractor
        from curate.llm.engine import Engine

        self._engine = Engine([self.config.teacher])
        self._engine.setup(ctx)
        self._extract = answer_extractor(tuple(self.config.methods))

    def teardown(self) -> None:
        """Release the rewriter's engine (a vLLM one holds its GPU share until shut down)
        before the next step or training loads another model."""
        if hasattr(self, "_engine"):
            self._engine.teardown()

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        if config.only_correct and config.correct_column not in frame.columns:
            raise ValueError(f"rewrite_traces: only_correct needs column {config.correct_column!r} (run verify first)")
        text, tokens, before = config.text, TOKENS[config.text], TOKENS_BEFORE[config.text]
        frame = frame.with_row_index(_ROW)
        selected = frame.filter(self._selected())
        ctx.on_progress(frame.height - selected.height)
        outcomes = self._rewrite(selected, ctx) if selected.height else _empty_outcomes()
        result = frame.join(outcomes, on=_ROW, how="left", maintain_order="left")
        accepted = pl.col("rewrite_status") == "rewritten"
        tokens_after = (pl.col(tokens) * pl.col("new_text").str.len_chars() / pl.col(text).str.len_chars()).round()
        result = result.with_columns(
            pl.when(accepted).then("new_completion").otherwise("completion").alias("completion"),
            pl.when(accepted).then("new_text").otherwise(text).alias(text),
            pl.when(accepted).then(tokens_after).otherwise(tokens).cast(pl.Int32).alias(tokens),
            existing_column(frame, before, pl.Int32).fill_null(pl.when(accepted).then(pl.col(tokens)))
            .cast(pl.Int32).alias(before),
            pruned_by=append_marker(frame, accepted, self.name),
            rewrite_status=pl.col("rewrite_status").fill_null("skipped"),
        )
        self._count(frame, result, ctx)
        return result.drop(_ROW, "new_text", "new_completion")

    def _selected(self) -> pl.Expr:
        """Math traces (the answer check is a math check) whose text to rewrite sits
        verbatim in the completion (so the completion can be rebuilt), as configured."""
        config = self.config
        keep = (
            (pl.col("domain") == "math")
            & (pl.col(config.text).str.len_chars() > 0)
            & pl.col("completion").str.contains(pl.col(config.text), literal=True)
            & (pl.col(TOKENS[config.text]).fill_null(0) >= config.min_tokens)
        )
        if config.only_correct:
            keep &= pl.col(config.correct_column).fill_null(False)
        return keep.fill_null(False)

    def _rewrite(self, selected: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """(row, rewrite_status, new_text, new_completion) for the selected rows."""
        fields = [*_PROBLEM_NAMES, *sorted(self.config.teacher.prompt.fields() - set(_PROBLEM_NAMES))]
        replies = self._engine.generate(selected.select(fields), ctx)  # one reply per row, in order
        rows = selected.select(
            _ROW, "completion", "answer_text", "reference_answer", original_text=self.config.text,
            original=pl.col("extracted_answer") if "extracted_answer" in selected.columns else pl.lit(None, pl.String),
        ).with_columns(
            rewrite=replies["answer_text"].str.strip_chars(),
            finish_reason=replies["finish_reason"],
            failure=replies["reject_reason"],
        )
        records = [self._judge(row) for row in rows.iter_rows(named=True)]
        self._confirm_by_math_verify(records)
        return pl.DataFrame(
            [{k: r[k] for k in (_ROW, "rewrite_status", "new_text", "new_completion")} for r in records],
            schema=_empty_outcomes().schema,
        )

    def _judge(self, row: dict) -> dict:
        """Status by rules that need no math-verify; a differing answer spelling is left
        'unsure' for one batched math-verify call."""
        record = {_ROW: row[_ROW], "new_text": row["rewrite"], "new_completion": None}
        found, method = self._extract(row["answer_text"])
        if found is None:
            found, method = self._extract(row["completion"])
        target = row["original"] or found or row["reference_answer"]
        stated, stated_method = self._extract(row["rewrite"]) if row["rewrite"] else (None, None)
        if row["failure"] is not None:
            status = f"failed:{row['failure']}"
        elif row["finish_reason"] == "length":
            status = "rejected:truncated"
        elif stated is None or target is None:
            status = "rejected:answer_lost"
        elif self.config.keep_format and stated_method != method:
            status = "rejected:format_lost"
        elif len(row["rewrite"]) > (1 - self.config.min_removed_share) * len(row["original_text"]):
            status = "rejected:no_gain"
        else:
            status = "rewritten" if stated == target else "unsure"
            record["new_completion"] = row["completion"].replace(row["original_text"], row["rewrite"], 1)
        record.update(rewrite_status=status, pair=(target, stated))
        return record

    def _confirm_by_math_verify(self, records: list[dict]) -> None:
        unsure = [r for r in records if r["rewrite_status"] == "unsure"]
        if not unsure:
            return
        from curate.answers.math import verify_pairs

        verdicts = verify_pairs([r["pair"] for r in unsure], workers=self.config.workers)
        for record, verdict in zip(unsure, verdicts, strict=True):
            record["rewrite_status"] = "rewritten" if verdict.correct else "rejected:answer_lost"

    def _count(self, before: pl.DataFrame, after: pl.DataFrame, ctx: StepContext) -> None:
        hesitation = T.marker_pattern(self.config.markers)
        totals = lambda frame: frame.select(  # noqa: E731
            tokens=pl.col(TOKENS[self.config.text]).cast(pl.Int64).sum(),
            hesitations=pl.col(self.config.text).str.count_matches(hesitation).sum(),
        ).row(0, named=True)
        old, new = totals(before), totals(after)
        for status, count in after["rewrite_status"].value_counts().iter_rows():
            ctx.count(f"rewrite.{status}", count)
        accepted = after.filter(pl.col("rewrite_status") == "rewritten").height
        ctx.count("rewrites_accepted", accepted)
        ctx.count("rewrites_rejected", after.filter(pl.col("rewrite_status").str.starts_with("rejected")).height)
        ctx.count("tokens_removed", int((old["tokens"] or 0) - (new["tokens"] or 0)))
        ctx.count("hesitations_before", int(old["hesitations"] or 0))
        ctx.count("hesitations_after", int(new["hesitations"] or 0))


def _empty_outcomes() -> pl.DataFrame:
    return pl.DataFrame(schema={_ROW: pl.UInt32, "rewrite_status": pl.String, "new_text": pl.String,
                                "new_completion": pl.String})

