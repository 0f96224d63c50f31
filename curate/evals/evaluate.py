"""`evaluate`: run a model (teacher or trained student) on held-out problems and score it.

Generation and verification are the pipeline's own `generate` and `verify` operators, so
a student is measured exactly as teachers are, and every completion lands in the same
response cache (re-running an evaluation, or scoring with new k values, costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.answers.check import AnswerChecker, VerifyConfig
from curate.core.io import write_json, write_parquet
from curate.core.operator import StepContext
from curate.core.paths import default_cache_dir
from curate.evals.metrics import summarise
from curate.llm.config import TeacherConfig

TRACE_COLUMNS = (
    "problem_id", "source", "problem", "reference_answer", "sample_index", "completion", "extracted_answer",
    "correct", "verify_status", "reasoning_tokens", "answer_tokens", "finish_reason",
)


class EvalConfig(BaseModel):
    """What to evaluate and how: the recipe's `eval:` section (problems come from its sources)."""

    model_config = ConfigDict(extra="forbid")

    model: TeacherConfig = Field(
        description="The model, run like a teacher: backend, model path/id, prompt, sampling (n = samples per problem)."
    )
    k: list[int] = Field([1], min_length=1, description="pass@k values to report; each at most sampling.n.")
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description="How answers are extracted and checked.")
    output_dir: Path | None = Field(None, description="Where eval.json and traces.parquet go; null writes nothing.")
    cache_dir: Path | None = Field(
        None, description="Response cache and converted models; defaults to $CURATE_CACHE_DIR or ~/.cache/curate."
    )

    @model_validator(mode="after")
    def _k_within_samples(self) -> EvalConfig:
        samples = self.model.sampling.n
        too_large = [k for k in self.k if k < 1 or k > samples]
        if too_large:
            raise ValueError(f"k={too_large} needs 1 <= k <= model.sampling.n ({samples})")
        return self


@dataclass
class EvalReport:
    model: str
    summary: pl.DataFrame  # scope, group, problems, samples, pass@k..., mean_tokens, truncation_rate
    traces: pl.DataFrame  # one verified row per sample
    generation_errors: int

    def overall(self) -> dict:
        return self.summary.filter(pl.col("scope") == "all").row(0, named=True)

    def to_json(self) -> dict:
        return {"model": self.model, "generation_errors": self.generation_errors,
                "overall": self.overall(), "groups": self.summary.to_dicts()}

    def table(self):
        from rich.table import Table

        table = Table(title=f"eval: {self.model}", title_justify="left")
        for column in self.summary.columns:
            table.add_column(column, justify="left" if column in ("scope", "group") else "right")
        for row in self.summary.iter_rows():
            table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
        return table

    def write(self, output_dir: Path) -> None:
        write_parquet(self.traces, output_dir / "traces.parquet")
        write_json(self.to_json(), output_dir / "eval.json")


def evaluate(config: EvalConfig, problems: pl.DataFrame) -> EvalReport:
    """Sample `config.model` on `problems` (a problem table), verify, and summarise."""
    from curate.llm.engine import Engine

    cache_dir = Path(config.cache_dir or default_cache_dir())
    ctx = StepContext(step_id="eval", step_dir=cache_dir / "eval", cache_dir=cache_dir)
    engine = Engine([config.model])
    engine.setup(ctx)
    try:
        traces = engine.generate(problems, ctx)
    finally:  # the model's engine goes before anything else (training, the next eval) loads one
        engine.teardown()

    failed = traces.filter(pl.col("reject_reason").is_not_null())
    verified = AnswerChecker(config.verify).check(traces.filter(pl.col("reject_reason").is_null()), ctx.count)
    # A sample the backend could not produce is a failed sample, not a missing one.
    failed = failed.with_columns(
        correct=pl.lit(False), verify_status=pl.col("reject_reason"), extracted_answer=pl.lit(None, pl.String)
    )
    keep = [*TRACE_COLUMNS, *(["band"] if "band" in problems.columns else [])]
    all_traces = pl.concat([verified.select(keep), failed.select(keep)], how="vertical_relaxed")

    report = EvalReport(config.model.model, summarise(all_traces, config.k), all_traces, failed.height)
    if config.output_dir is not None:
        report.write(config.output_dir)
    return report


def load_eval_set(sources: list, recipe_dir: Path) -> pl.DataFrame:
    """The problem table of recipe `Source` entries (held-out sets), via the recipe loader's readers."""
    from curate.sources.problems import load_problems

    return pl.concat([load_problems(source, recipe_dir) for source in sources])
