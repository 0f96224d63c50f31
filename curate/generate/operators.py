"""The generation operators: `generate` (n samples per problem from each teacher) and
`adaptive_generate` (generate and verify in rounds). Both run their teachers through
`curate.llm.engine.Engine`: prompts, backends, the response cache and budgets live there.

`adaptive_generate`: a fixed-k run spends k samples on every problem, although 4 failures
out of 4 already say "hard" and 4 successes "easy". This step samples in rounds (the
policy is in `curate.passrate`): after each round it verifies the new traces, settles every
problem whose pass-rate interval lies inside one difficulty band, and gives the next
round only to the unsettled ones, up to a per-problem cap (the fixed-k it replaces) and
a total budget. The step metrics report samples drawn, the fixed-k count and the saving.

With several teachers a problem's samples alternate between them (sample j goes to
teacher j mod T, as that teacher's sample j // T), so every round keeps the teacher mix
even. A teacher's sample i is the same request as `generate`'s sample i (same cache key,
same trace_id): switching a recipe between the two steps reuses every completion.

The output is what `generate` + `verify` would give (trace rows with the verify
columns), so `grade` follows it. Each finished round is checkpointed in the step's
`parts/`, and every completion is cached as it arrives, so a resumed step reads the
finished rounds back and generates nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import polars as pl
from pydantic import Field, model_validator

from curate.answers.check import VERIFY_COLUMNS, AnswerChecker, VerifyConfig, checked_columns
from curate.core.io import write_parquet
from curate.core.operator import Operator, StepContext, register
from curate.llm.config import GenerateConfig, TeacherConfig
from curate.llm.engine import TRACE_ONLY, Engine, plan_requests, ray_resources
from curate.passrate import AdaptiveConfig, run_adaptive
from curate.schema import content_hash

log = logging.getLogger(__name__)


@register
class Generate(Operator[GenerateConfig]):
    """Sample n completions per problem from each teacher (transformers, OpenAI-compatible
    server, vLLM or llama.cpp), split reasoning from answer, and cache every completion
    durably so that nothing is generated twice."""

    name = "generate"
    reject_reasons = ("over_budget", "generation_error")
    Config = GenerateConfig
    scope = "batch"
    reads = ("problem_id",)
    adds = TRACE_ONLY + ("reject_reason", "reject_detail")
    # Problems per chunk: big enough for vLLM to batch well, small enough that a chunk's
    # step checkpoint comes often (completions themselves are cached one by one anyway).
    default_chunk_size = 512
    # The engine makes the rows: editing it invalidates this step's checkpoints (runner fingerprint).
    code_modules = ("curate.llm.engine",)
    can_plan = True

    def plan(self, frame: pl.DataFrame, cache_dir: Path) -> tuple[pl.DataFrame, str]:
        return plan_requests(frame, self.config, cache_dir), ""

    def input_columns(self) -> set[str]:
        columns = set(self.reads)
        for teacher in self.config.teachers:
            columns |= teacher.prompt.fields()
        return columns

    def resources(self) -> dict[str, float]:
        return ray_resources(self.config.teachers)

    def setup(self, ctx: StepContext) -> None:
        self.engine = Engine(self.config.teachers)
        self.engine.setup(ctx)
        self.backends = self.engine.backends

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        return self.engine.generate(frame, ctx)

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.engine.teardown()


class AdaptiveGenerateConfig(GenerateConfig):
    teachers: list[TeacherConfig] = Field(
        min_length=1, description="Teachers to sample from, in turn: a problem's sample j goes to teacher j mod T."
    )
    sampling: AdaptiveConfig = Field(
        default_factory=AdaptiveConfig,
        description="Rounds, confidence, band edges, per-problem cap (the fixed k) and total budget. "
        "Samples count over all teachers together.",
    )
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description="How each round's traces are verified.")

    @model_validator(mode="after")
    def _no_fixed_n(self) -> AdaptiveGenerateConfig:
        fixed = [t.name for t in self.teachers if t.sampling.n != 1]
        if fixed:
            raise ValueError(f"teachers {fixed} set sampling.n, but adaptive_generate decides how many "
                             "samples each problem gets: set sampling.max_samples_per_problem instead")
        return self


def fixed_k_teachers(config: AdaptiveGenerateConfig) -> GenerateConfig:
    """The teachers with the n each gets at the per-problem cap: the fixed-k run this step
    replaces, and the most it can request (what `curate plan` shows)."""
    cap, count = config.sampling.max_samples_per_problem, len(config.teachers)
    teachers = [t.model_copy(update={"sampling": t.sampling.model_copy(update={"n": len(range(k, cap, count))})})
                for k, t in enumerate(config.teachers)]
    return GenerateConfig(teachers=[t for t in teachers if t.sampling.n > 0])


@register
class AdaptiveGenerate(Operator[AdaptiveGenerateConfig]):
    """Sample and verify in rounds: stop sampling a problem once its difficulty band is
    decided with the configured confidence, and spend the rest of the budget on the
    undecided ones. Outputs verified trace rows, like generate + verify."""

    name = "adaptive_generate"
    reject_reasons = ("over_budget", "generation_error")
    Config = AdaptiveGenerateConfig
    scope = "global"  # each round depends on every problem's results so far
    code_modules = ("curate.llm.engine", "curate.passrate")
    reads = Generate.reads
    adds = Generate.adds + tuple(VERIFY_COLUMNS)
    can_plan = True

    def plan(self, frame: pl.DataFrame, cache_dir: Path) -> tuple[pl.DataFrame, str]:
        """The most the step can request: every problem sampled up to its cap."""
        return (plan_requests(frame, fixed_k_teachers(self.config), cache_dir),
                " (adaptive: at most, if no problem settles before its cap)")

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        if "samples_saved" not in metrics:
            return None
        m = metrics
        return (f"{m['samples_drawn']:,} samples in {m['rounds']} rounds vs "
                f"{m['fixed_k_samples']:,} at fixed k (saved {m['saved_fraction']:.1%}); "
                f"bands settled for {m['settled']:,} of {m['problems']:,} problems, the rest hit the cap or budget")

    def input_columns(self) -> set[str]:
        verify_reads = checked_columns(self.config.verify) - set(Generate.adds)
        return self._generate().input_columns() | verify_reads

    def _generate(self) -> Generate:
        return Generate(GenerateConfig(teachers=self.config.teachers))

    def setup(self, ctx: StepContext) -> None:
        self.engine = Engine(self.config.teachers)
        self.engine.setup(ctx)
        self.checker = AnswerChecker(self.config.verify)

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.engine.teardown()

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        problems = frame.unique("problem_id", keep="first", maintain_order=True)
        drawn = dict.fromkeys(problems.get_column("problem_id").to_list(), 0)
        finished_before = rounds = 0
        # The step's bar counts problems whose sampling is over; each round shows its own
        # per-teacher bars, labelled with the round.
        round_ctx = dataclasses.replace(
            ctx, on_progress=lambda advance: None,
            subtask=lambda label, total: ctx.subtask(f"{label} round {rounds}", total))

        def sample_round(plan: pl.DataFrame) -> pl.DataFrame:
            nonlocal rounds, finished_before
            rounds += 1
            finished = problems.height - plan.height  # settled, capped or out of budget
            ctx.on_progress(finished - finished_before)
            finished_before = finished
            rows = problems.join(plan, on="problem_id", how="inner", maintain_order="right")
            indices = self._teacher_indices(rows.get_column("problem_id").to_list(),
                                            rows.get_column("n").to_list(), drawn)
            # A finished round is kept on disk, named by what it sampled, so a resumed step
            # reads it back instead of re-verifying it (its completions are cached anyway).
            part = ctx.step_dir / "parts" / f"round-{rounds:04d}-{content_hash(plan.write_csv())}.parquet"
            if part.exists():
                traces = pl.read_parquet(part)
                self._count_spend(traces)
            else:
                traces = self._verified(self.engine.generate(rows.drop("n"), round_ctx, indices), round_ctx)
                write_parquet(traces, part)
            log.info("adaptive round %d: %d problem(s) sampled, %d trace(s)", rounds, plan.height, traces.height)
            return traces

        result = run_adaptive(problems.select("problem_id"), sample_round, self.config.sampling)
        for name, value in result.summary().items():
            ctx.metrics[name] = value
        if result.samples.is_empty():
            return self._verified(self.engine.generate(problems.clear(), round_ctx), round_ctx)
        return self._in_input_order(result.samples.drop("round"), problems)

    def _in_input_order(self, traces: pl.DataFrame, problems: pl.DataFrame) -> pl.DataFrame:
        """Rows as generate orders them: problem, then teacher, then sample."""
        order = problems.select("problem_id").with_row_index("_problem")
        teachers = pl.DataFrame({"teacher": [t.name for t in self.config.teachers]}).with_row_index("_teacher")
        return (traces.join(order, on="problem_id", how="left").join(teachers, on="teacher", how="left")
                .sort("_problem", "_teacher", "sample_index").drop("_problem", "_teacher"))

    def _teacher_indices(self, problem_ids: list[str], counts: list[int],
                         drawn: dict[str, int]) -> dict[str, list[list[int]]]:
        """Per teacher, per plan row, the teacher-local sample indices of this round."""
        teachers = [t.name for t in self.config.teachers]
        indices: dict[str, list[list[int]]] = {name: [[] for _ in problem_ids] for name in teachers}
        for row, (problem_id, count) in enumerate(zip(problem_ids, counts, strict=True)):
            for sample in range(drawn[problem_id], drawn[problem_id] + count):
                indices[teachers[sample % len(teachers)]][row].append(sample // len(teachers))
            drawn[problem_id] += count
        return indices

    def _count_spend(self, traces: pl.DataFrame) -> None:
        """Charge a round read back from disk to the teachers' budgets, as generate would."""
        produced = traces.filter(pl.col("reject_reason").ne_missing("over_budget"))
        tokens = pl.sum_horizontal("prompt_tokens", "reasoning_tokens", "answer_tokens").fill_null(0)
        for teacher, requests, used in produced.group_by("teacher").agg(pl.len(), tokens.sum()).iter_rows():
            self.engine.spend[teacher].requests += requests
            self.engine.spend[teacher].tokens += used

    def _verified(self, traces: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        # Rows generate could not produce (over budget, server errors) keep their reason
        # and have nothing to verify; they are drawn samples that count as no sample.
        failed = pl.col("reject_reason").is_not_null()
        verified = self.checker.check(traces.filter(~failed), ctx.count)
        return pl.concat([verified, traces.filter(failed)], how="diagonal_relaxed")
