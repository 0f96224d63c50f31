"""`confirm_contamination`: embedding candidates, then an LLM judge decides "same problem?".

N-gram and embedding scores cannot tell a paraphrase of an eval item (contamination) from
the same template with other numbers (a different problem), nor a shared boilerplate
sentence from a shared problem. This step finds, for every pool problem, its `top_k`
most similar eval problems (cosine of the embeddings, at least `min_similarity`) and asks
the judge (`curate.llm.judge`, task 'same_problem', any teacher backend, cached and
resumable like generation) about each candidate pair. A 'yes' rejects the problem as
'contaminated', with the eval item, similarity and the judge's reason as evidence;
`contamination_confirm_report.parquet` in the step folder lists every judged pair with
its verdict, status and reason. A reply that cannot be parsed never rejects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from pydantic import Field

from curate.core.io import write_parquet
from curate.core.operator import Filter, StepContext, register
from curate.dedup.embed import DEFAULT_MAX_CHARS, Embedder
from curate.dedup.evalsets import EvalSetSpec, load_eval_sets
from curate.llm.judge import Judge, JudgeConfig

REPORT_FILE = "contamination_confirm_report.parquet"
_BLOCK = 4096  # pool rows per similarity block: (block x eval items) floats at a time


class ConfirmContaminationConfig(JudgeConfig):
    eval_sets: list[str | EvalSetSpec] = Field(
        ["aime24", "aime25", "amc23", "math500"],
        description="Eval sets, as for decontaminate: bundled names, file paths or {path|hf_dataset, field} mappings.",
    )
    column: str = Field("problem", description="Text column compared with the eval problems.")
    model: str = Field("bundled:minilm", description="Embedding model for the candidates (as semantic_dedup).")
    batch_size: int = Field(64, ge=1, description="Texts per embedding forward pass.")
    embed_max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1, description="Characters of each text embedded.")
    top_k: int = Field(3, ge=1, description="Nearest eval problems judged per pool problem.")
    min_similarity: float = Field(
        0.6, ge=-1, le=1, description="Cosine similarity a candidate needs to be judged at all."
    )


@register
class ConfirmContamination(Filter[ConfirmContaminationConfig]):
    """For each problem, judge its top_k most similar eval problems (cosine >=
    min_similarity) with an LLM: 'same problem?'. Rejects 'contaminated' on a yes (evidence:
    eval item, similarity, judge's reason); contamination_confirm_report.parquet lists every
    judged pair."""

    name = "confirm_contamination"
    Config = ConfirmContaminationConfig
    scope = "global"
    adds = ("reject_reason", "reject_detail")
    reject_reasons = ("contaminated",)
    can_plan = True
    code_modules = ("curate.llm.judge", "curate.llm.engine")

    def input_columns(self) -> set[str]:
        return {self.config.column}

    def setup(self, ctx: StepContext) -> None:
        config = self.config
        self.evals = load_eval_sets(config.eval_sets)
        if self.evals.is_empty():
            raise ValueError("confirm_contamination: the eval sets hold no problems")
        self._embedder = Embedder(config.model, ctx.cache_dir, config.batch_size, config.embed_max_chars)
        self._judge = Judge(config, "same_problem")
        self._judge.setup(ctx)

    def teardown(self) -> None:
        if hasattr(self, "_judge"):
            self._judge.teardown()

    def candidates(self, texts: pl.Series, embedder: Embedder) -> pl.DataFrame:
        """(pool_text, eval_row, similarity) for each distinct text's top_k eval problems."""
        config = self.config
        pool = texts.drop_nulls().unique(maintain_order=True)
        pool = pool.filter(pool.str.strip_chars().str.len_chars() > 0)
        if pool.is_empty():
            return pl.DataFrame(schema={"pool_text": pl.String, "eval_row": pl.UInt32, "similarity": pl.Float32})
        pool_vectors = embedder.embed(pool.to_list()).astype(np.float32)
        eval_vectors = embedder.embed(self.evals["eval_problem"].to_list()).astype(np.float32)
        k = min(config.top_k, len(eval_vectors))
        rows, columns, scores = [], [], []
        for start in range(0, len(pool_vectors), _BLOCK):
            similarity = pool_vectors[start:start + _BLOCK] @ eval_vectors.T
            best = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(similarity, best, axis=1)
            keep = best_scores >= config.min_similarity
            block_rows = np.nonzero(keep)[0] + start
            rows.append(block_rows)
            columns.append(best[keep])
            scores.append(best_scores[keep])
        return pl.DataFrame({
            "pool_text": pool.gather(np.concatenate(rows)),
            "eval_row": np.concatenate(columns).astype(np.uint32),
            "similarity": np.concatenate(scores).astype(np.float32),
        })

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        column = self.config.column
        evals = self.evals.with_row_index("eval_row")
        pairs = (self.candidates(frame[column], self._embedder)
                 .join(evals, on="eval_row").sort("pool_text", "similarity", descending=[False, True]))
        ctx.count("candidate_pairs", pairs.height)
        verdicts = self._judge.judge(pairs.select(judge_problem="pool_text", judge_other="eval_problem"), ctx)
        report = pl.concat([pairs, verdicts], how="horizontal")
        write_parquet(report.select(pl.col("pool_text").alias(column), "eval_set", "eval_id", "eval_problem",
                                    pl.col("similarity").round(4), *verdicts.columns),
                      ctx.step_dir / REPORT_FILE)
        confirmed = (report.filter(pl.col("judge_verdict") & (pl.col("judge_status") == "ok"))
                     .group_by("pool_text", maintain_order=True).first()
                     .select(pl.col("pool_text").alias("__text"),
                             __detail=pl.struct("eval_set", "eval_id", "eval_problem", pl.col("similarity").round(4),
                                                pl.col("judge_reason")).struct.json_encode()))
        ctx.count("confirmed", confirmed.height)
        marked = frame.join(confirmed, left_on=column, right_on="__text", how="left", maintain_order="left")
        hit = pl.col("__detail").is_not_null()
        earlier = pl.col("reject_reason") if "reject_reason" in frame.columns else pl.lit(None, pl.String)
        earlier_detail = pl.col("reject_detail") if "reject_detail" in frame.columns else pl.lit(None, pl.String)
        result = marked.with_columns(
            reject_reason=pl.when(hit).then(pl.lit("contaminated")).otherwise(earlier),
            reject_detail=pl.when(hit).then(pl.col("__detail")).otherwise(earlier_detail),
        ).drop("__detail")
        ctx.on_progress(frame.height)
        return result

    def plan(self, frame: pl.DataFrame, cache_dir: Path) -> tuple[pl.DataFrame, str]:
        """The judge requests for the candidates (embeds the texts: cheap next to judging)."""
        self.evals = load_eval_sets(self.config.eval_sets)
        embedder = Embedder(self.config.model, cache_dir, self.config.batch_size, self.config.embed_max_chars)
        pairs = self.candidates(frame[self.config.column], embedder).join(
            self.evals.with_row_index("eval_row"), on="eval_row")
        items = pairs.select(judge_problem="pool_text", judge_other="eval_problem")
        return Judge(self.config, "same_problem").plan(items, cache_dir), " (confirm_contamination's judge)"

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        if "candidate_pairs" not in metrics:
            return None
        return (f"{int(metrics['candidate_pairs'])} candidate pairs judged, {int(metrics.get('confirmed', 0))} "
                f"problems confirmed contaminated, {int(metrics.get('judge.unparseable', 0))} unparseable replies")
