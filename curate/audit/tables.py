"""Audit tables: what a finished run (or a published version) contains, as polars frames.

`Audit.open(path)` reads a run directory (run.json + output.parquet + rejections.parquet)
or a published version folder (lineage.json + data/*.parquet). Every table method
returns a polars frame; when the columns it needs are absent it returns an empty frame
and records why in `Audit.notes`, so a partial run still gets a report.

Two row sets are used: `kept` (the run's output: what a student would train on) and
`all` (every generated trace, kept or rejected by a later step). Teacher accuracy and
lengths default to `all`, since the kept rows were already filtered on correctness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from curate.core.io import read_json_object
from curate.core.rundir import (
    CONTAMINATION_REASONS,
    DUPLICATE_REASONS,
    RunDir,
    RunDirError,
    RunManifest,
    StepRecord,
)
from curate.prune.filters import DEFAULT_HESITATION_MARKERS
from curate.prune.text import marker_pattern

Scope = Literal["all", "kept"]

# (tokens now, tokens before the first shortening) written by the prune operators.
PRUNED_TOKENS = (("reasoning_tokens", "reasoning_tokens_before"), ("answer_tokens", "answer_tokens_before"))
# A teacher "solves" a problem in the agreement matrix when most of its samples are correct.
SOLVED_AT = 0.5

_DUPLICATE_DETAIL = pl.Struct({"duplicate_of": pl.String, "similarity": pl.Float64, "cluster_size": pl.Int64,
                               "method": pl.String})
_CONTAMINATION_DETAIL = pl.Struct({"match": pl.String, "method": pl.String, "score": pl.Float64,
                                   "eval_set": pl.String, "eval_id": pl.String, "eval_problem": pl.String,
                                   "shared_ngrams": pl.Int64, "common_ngrams": pl.Int64})
# Step metrics of the dedup number guard, templates and decontamination matches.
_GUARD_METRICS = ("number_guard_pairs", "question_guard_pairs", "same_numbers_pairs", "templates",
                  "template_duplicates", "contaminated", "same_template", "common_ngrams")
_TEACHER_PASS_RATES = pl.List(pl.Struct({"teacher": pl.String, "pass_rate": pl.Float64, "n_samples": pl.Int64}))


class AuditError(ValueError):
    """The path is neither a run directory nor a published dataset version."""


@dataclass
class Audit:
    path: Path
    kind: Literal["run", "published"]
    manifest: dict
    output: pl.DataFrame
    rejections: pl.DataFrame
    # The manifest, typed: run.json, or the recipe and steps a published version's lineage.json lists.
    run: RunManifest
    hesitation_markers: list[str] = field(default_factory=lambda: list(DEFAULT_HESITATION_MARKERS))
    notes: list[str] = field(default_factory=list)
    # Tables left empty because the recipe has no step that makes their data (not a warning).
    absent: list[str] = field(default_factory=list)

    # --- loading -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Audit:
        """Audit a run directory, a published version folder, or a published dataset
        folder (its most recent version)."""
        path = Path(path)
        if (path / "run.json").is_file():
            return cls._open_run(path)
        if (path / "lineage.json").is_file():
            return cls._open_version(path)
        versions = sorted(p.parent for p in path.glob("*/lineage.json") if not p.parent.name.startswith("."))
        if versions:
            latest = max(versions, key=lambda folder: _read_json(folder / "lineage.json").get("created_at") or "")
            return cls._open_version(latest)
        raise AuditError(f"{path}: not a run directory (no run.json) nor a published version (no lineage.json)")

    @classmethod
    def _open_run(cls, run_dir: Path) -> Audit:
        directory = RunDir(run_dir)
        try:
            run = directory.read_manifest()
        except RunDirError as error:
            raise AuditError(str(error)) from None
        if not run.finished_at or run.output is None:
            return cls._open_unfinished(directory, run)
        output_path = directory.root / run.output
        if not output_path.is_file():
            raise AuditError(f"{directory.manifest_path}: output file {output_path} does not exist")
        rejections_path = directory.root / (run.rejections or directory.rejections.name)
        rejections = _read_parquet(rejections_path) if rejections_path.is_file() else pl.DataFrame()
        audit = cls(run_dir, "run", _read_json(directory.manifest_path), _read_parquet(output_path), rejections,
                    run=run)
        if not rejections_path.is_file():
            audit.notes.append(f"{rejections_path} is missing: rejected rows (clusters, contamination) are unknown.")
        return audit

    @classmethod
    def _open_unfinished(cls, directory: RunDir, run: RunManifest) -> Audit:
        """An interrupted or failed run: audit what its finished steps wrote (run.json lists
        only those), the last one's output standing for the run's."""
        finished = [step for step in run.steps if step.output and (directory.root / step.output).is_file()]
        if not finished:
            raise AuditError(f"{directory.manifest_path}: the run stopped before any step finished; nothing to audit")
        last = finished[-1]
        step_rejections = [_read_parquet(directory.root / step.rejections) for step in finished
                           if step.rejections and (directory.root / step.rejections).is_file()]
        non_empty = [frame for frame in step_rejections if frame.height]
        rejections = pl.concat(non_empty, how="diagonal_relaxed") if non_empty else pl.DataFrame()
        audit = cls(directory.root, "run", _read_json(directory.manifest_path),
                    _read_parquet(directory.root / last.output), rejections, run=run)
        audit.notes.append(f"The run did not finish: this audit covers its {len(finished)} finished step(s), up to "
                           f"{last.id!r}, whose output stands for the run's.")
        return audit

    @classmethod
    def _open_version(cls, folder: Path) -> Audit:
        lineage = _read_json(folder / "lineage.json")
        files = [folder / f["path"] for f in lineage.get("files", [])] or sorted((folder / "data").glob("*.parquet"))
        missing = [str(f) for f in files if not f.is_file()]
        if not files or missing:
            raise AuditError(f"{folder / 'lineage.json'}: data files missing: {', '.join(missing) or 'none listed'}")
        output = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        run = RunManifest.model_validate({key: lineage[key] for key in ("recipe", "steps") if key in lineage})
        audit = cls(folder, "published", lineage, output, pl.DataFrame(), run)
        audit.notes.append("Published version: only kept rows are available, so teacher accuracy, clusters and "
                           "contamination hits cover what was published (the funnel comes from lineage.json).")
        return audit

    # --- row sets ------------------------------------------------------------------------

    @property
    def steps(self) -> list[StepRecord]:
        return self.run.steps

    @property
    def title(self) -> str:
        name = self.run.recipe.name or self.path.name
        return f"{name} v{self.manifest['version']}" if self.kind == "published" else name

    def rows(self, scope: Scope = "all") -> pl.DataFrame:
        """Kept rows, or every generated trace (kept and rejected) with a `kept` flag and
        the `step` that rejected it."""
        kept = self.output.with_columns(kept=pl.lit(True), step=pl.lit(None, pl.String))
        if scope == "kept" or "trace_id" not in self.rejections.columns:
            return kept
        rejected = self.rejections.filter(pl.col("trace_id").is_not_null()).with_columns(kept=pl.lit(False))
        return pl.concat([kept, rejected], how="diagonal_relaxed")

    def _has(self, frame: pl.DataFrame, columns: tuple[str, ...], table: str) -> bool:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            names = ", ".join(repr(c) for c in missing)
            self._note_missing(table, missing, f"{table}: no column {names} in {self.path}; table is empty.")
        return not missing

    # --- tables ---------------------------------------------------------------------------

    def funnel(self) -> pl.DataFrame:
        """Rows in and out of each step, rows rejected, and the share of the first step's rows left."""
        schema = {"step": pl.String, "op": pl.String, "rows_in": pl.Int64, "rows_out": pl.Int64,
                  "rejected": pl.Int64, "status": pl.String, "seconds": pl.Float64}
        records = [
            {"step": s.id, "op": s.op, "rows_in": s.rows_in, "rows_out": s.rows_out,
             "rejected": sum(s.rejected.values()), "status": s.status, "seconds": s.seconds}
            for s in self.steps
        ]
        if not records:
            self.notes.append(f"funnel: {self.path} lists no steps.")
        frame = pl.DataFrame(records, schema=schema)
        return frame.with_columns(
            changed=pl.col("rows_out") - pl.col("rows_in"),
            retained=(pl.col("rows_out") / pl.col("rows_in")).round(4),
        )

    def rejection_reasons(self) -> pl.DataFrame:
        """Rejected rows per step and reason, from the manifest; `in_table` counts the same
        rows in rejections.parquet (null for published versions, which have none)."""
        records = [{"step": s.id, "reason": reason, "rows": count}
                   for s in self.steps for reason, count in s.rejected.items()]
        frame = pl.DataFrame(records, schema={"step": pl.String, "reason": pl.String, "rows": pl.Int64})
        if {"step", "reject_reason"} <= set(self.rejections.columns):
            counted = self.rejections.group_by("step", reason="reject_reason").agg(in_table=pl.len().cast(pl.Int64))
            return frame.join(counted, on=["step", "reason"], how="full", coalesce=True).sort("step", "reason")
        return frame.with_columns(in_table=pl.lit(None, pl.Int64))

    def teachers(self, scope: Scope = "all") -> pl.DataFrame:
        """Per teacher: traces, kept, accuracy over verified traces, reasoning tokens,
        truncation rate and hesitation-marker counts."""
        frame = self.rows(scope)
        if not self._has(frame, ("teacher",), "teachers"):
            return pl.DataFrame(schema={"teacher": pl.String, "traces": pl.UInt32})
        aggregates = [pl.len().alias("traces"), pl.col("kept").sum().alias("kept")]
        columns = set(frame.columns)
        if "correct" in columns:
            aggregates += [pl.col("correct").is_not_null().sum().alias("verified"),
                           pl.col("correct").cast(pl.Float64).mean().round(4).alias("accuracy")]
        if "reasoning_tokens" in columns:
            tokens = pl.col("reasoning_tokens").cast(pl.Float64)
            aggregates += [tokens.mean().round(1).alias("reasoning_tokens_mean"),
                           tokens.median().alias("reasoning_tokens_median")]
        if {"reasoning_tokens", "answer_tokens"} <= columns:
            aggregates.append((pl.col("reasoning_tokens") + pl.col("answer_tokens")).sum().alias("completion_tokens"))
        if "finish_reason" in columns:
            aggregates.append((pl.col("finish_reason") == "length").cast(pl.Float64).mean().round(4)
                              .alias("truncation_rate"))
        if "reasoning" in columns:
            hesitations = pl.col("reasoning").fill_null("").str.count_matches(marker_pattern(self.hesitation_markers))
            aggregates += [hesitations.sum().alias("hesitations"),
                           hesitations.mean().round(2).alias("hesitations_per_trace")]
            if "reasoning_tokens" in columns:
                tokens = pl.col("reasoning_tokens").sum()
                aggregates.append(pl.when(tokens > 0).then(1000 * hesitations.sum() / tokens).round(2)
                                  .alias("hesitations_per_1k_tokens"))
        return frame.group_by("teacher").agg(aggregates).sort("teacher")

    def bands(self, scope: Scope = "kept") -> pl.DataFrame:
        """Difficulty bands: problems, traces and share of traces, hardest band first."""
        frame = self.rows(scope)
        if not self._has(frame, ("band",), "bands"):
            return pl.DataFrame(schema={"band": pl.String, "problems": pl.UInt32, "traces": pl.UInt32})
        aggregates = [pl.len().alias("traces")]
        if "problem_id" in frame.columns:
            aggregates.insert(0, pl.col("problem_id").n_unique().alias("problems"))
        if "pass_rate" in frame.columns:
            aggregates += [pl.col("pass_rate").min().alias("pass_rate_min"),
                           pl.col("pass_rate").mean().round(4).alias("pass_rate_mean"),
                           pl.col("pass_rate").max().alias("pass_rate_max")]
        order = ["pass_rate_mean", "band"] if "pass_rate" in frame.columns else ["band"]
        return (
            frame.with_columns(pl.col("band").fill_null("ungraded"))
            .group_by("band").agg(aggregates)
            .with_columns(share=(pl.col("traces") / pl.col("traces").sum()).round(4))
            .sort(order, nulls_last=True)
        )

    def pass_rates(self, scope: Scope = "all") -> pl.DataFrame:
        """One row per graded problem: its pass rate (and band when present)."""
        frame = self.rows(scope)
        if not self._has(frame, ("problem_id", "pass_rate"), "pass_rates"):
            return pl.DataFrame(schema={"problem_id": pl.String, "pass_rate": pl.Float64})
        keep = [c for c in ("problem_id", "pass_rate", "band") if c in frame.columns]
        return frame.filter(pl.col("pass_rate").is_not_null()).select(keep).unique("problem_id").sort("problem_id")

    def length_column(self) -> str:
        """reasoning_tokens, or answer_tokens when no trace has reasoning (teachers without
        a thinking phase put everything in the answer)."""
        rows = self.rows("all")
        if "reasoning_tokens" in rows.columns and (
            rows["reasoning_tokens"].sum() or "answer_tokens" not in rows.columns
        ):
            return "reasoning_tokens"
        return "answer_tokens" if "answer_tokens" in rows.columns else "reasoning_tokens"

    def lengths(self, column: str | None = None, scope: Scope = "all") -> pl.DataFrame:
        """Distribution of `column` (a token count; default `length_column()`) per teacher:
        mean, spread and quantiles."""
        column = column or self.length_column()
        frame = self.rows(scope)
        if not self._has(frame, ("teacher", column), "lengths"):
            return pl.DataFrame(schema={"teacher": pl.String, "traces": pl.UInt32})
        values = pl.col(column).cast(pl.Float64)
        quantiles = [values.quantile(q, "linear").alias(f"p{round(q * 100)}") for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
        return frame.group_by("teacher").agg(
            pl.len().alias("traces"), values.mean().round(1).alias("mean"), values.std().round(1).alias("std"),
            values.min().alias("min"), *quantiles, values.max().alias("max"),
        ).sort("teacher")

    def agreement(self) -> pl.DataFrame:
        """Teacher x teacher: on problems both attempted, the share where both solve it or
        both fail (solved = at least half of the teacher's verified samples correct)."""
        per_teacher = self._teacher_pass_rates()
        if per_teacher is None:
            return pl.DataFrame(schema={"teacher_a": pl.String, "teacher_b": pl.String, "problems": pl.UInt32,
                                        "agreement": pl.Float64})
        solved = per_teacher.select("problem_id", "teacher", solved=pl.col("pass_rate") >= SOLVED_AT)
        pairs = solved.join(solved, on="problem_id", suffix="_b").rename({"teacher": "teacher_a"})
        return (
            pairs.group_by("teacher_a", "teacher_b")
            .agg(pl.len().alias("problems"),
                 (pl.col("solved") == pl.col("solved_b")).cast(pl.Float64).mean().round(4).alias("agreement"))
            .sort("teacher_a", "teacher_b")
        )

    def label_agreement(self) -> pl.DataFrame:
        """Imported traces that came with a correctness label (`source_correct`): per source
        and teacher, how often verify's `correct` agrees, and how the rest disagree. Every
        trace counts, kept or rejected later. Empty when the run imported no labels."""
        rows = self.rows("all")
        if "source_correct" not in rows.columns or "correct" not in rows.columns:
            return pl.DataFrame(schema={"source": pl.String, "teacher": pl.String, "traces": pl.UInt32,
                                        "agreement": pl.Float64})
        label, ours = pl.col("source_correct"), pl.col("correct")
        counts = [pl.len().alias("traces"), ours.eq_missing(label).sum().alias("agree"),
                  (label & ours.eq(False)).sum().alias("label_true_verify_false"),
                  (~label & ours.eq(True)).sum().alias("label_false_verify_true"),
                  ours.is_null().sum().alias("verify_undecided")]
        labelled = rows.filter(label.is_not_null())
        per_teacher = labelled.group_by("source", "teacher").agg(counts).sort("source", "teacher")
        total = labelled.select(pl.lit("all").alias("source"), pl.lit("all").alias("teacher"), *counts)
        table = pl.concat([per_teacher, total.cast(per_teacher.schema)]) if labelled.height else per_teacher
        return table.with_columns(agreement=(pl.col("agree") / pl.col("traces")).round(4))

    def label_disagreements(self, limit: int | None = None) -> pl.DataFrame:
        """Every imported trace whose label and verify's verdict differ (or the first
        `limit`), to read by hand: where it came from (source, record when the import kept
        it, trace_id), the problem, both verdicts and why verify decided as it did."""
        rows = self.rows("all")
        if "source_correct" not in rows.columns or "correct" not in rows.columns:
            return pl.DataFrame()
        columns = [c for c in ("source", "source_record", "teacher", "problem_id", "trace_id", "sample_index",
                               "source_correct", "correct", "verify_status", "verify_detail", "reference_answer",
                               "extracted_answer", "finish_reason", "problem")
                   if c in rows.columns]
        differ = pl.col("source_correct").is_not_null() & ~pl.col("correct").eq_missing(pl.col("source_correct"))
        order = [c for c in ("source", "teacher", "problem_id", "sample_index") if c in rows.columns]
        found = rows.filter(differ).sort(order, nulls_last=True, maintain_order=True).select(columns)
        return found.head(limit) if limit is not None else found

    def judge(self) -> pl.DataFrame:
        """Verify's LLM judge against the rules, over every trace it was asked about:
        rows per (rule verdict `correct`, judge_verdict, judge_status); `disagree` marks
        where both decided and differ."""
        schema = {"correct": pl.Boolean, "judge_verdict": pl.Boolean, "judge_status": pl.String,
                  "rows": pl.UInt32, "disagree": pl.Boolean}
        frame = self.rows("all")
        if "judge_status" not in frame.columns:
            return pl.DataFrame(schema=schema)  # no judge in this run: nothing to note
        asked = frame.filter(pl.col("judge_status").is_not_null() & (pl.col("judge_status") != "skipped"))
        return (asked.group_by("correct", "judge_verdict", "judge_status").agg(rows=pl.len())
                .with_columns(disagree=pl.col("correct").is_not_null() & pl.col("judge_verdict").is_not_null()
                              & (pl.col("correct") != pl.col("judge_verdict")))
                .select(list(schema)).sort("judge_status", "correct", "judge_verdict", nulls_last=True))

    def _teacher_pass_rates(self) -> pl.DataFrame | None:
        """(problem_id, teacher, pass_rate): from verified traces, else from grade's JSON."""
        frame = self.rows("all")
        if {"problem_id", "teacher", "correct"} <= set(frame.columns):
            return (frame.filter(pl.col("correct").is_not_null())
                    .group_by("problem_id", "teacher").agg(pass_rate=pl.col("correct").cast(pl.Float64).mean()))
        if {"problem_id", "teacher_pass_rates"} <= set(frame.columns):
            return (frame.unique("problem_id")
                    .select("problem_id", rates=pl.col("teacher_pass_rates").str.json_decode(_TEACHER_PASS_RATES))
                    .explode("rates").unnest("rates").select("problem_id", "teacher", "pass_rate")
                    .drop_nulls("pass_rate"))
        self._note_missing("agreement", ["correct", "teacher_pass_rates"],
                           "agreement: needs 'correct' (verify) or 'teacher_pass_rates' (grade) with "
                           "'problem_id'; table is empty.")
        return None

    def pruning(self) -> pl.DataFrame:
        """Per teacher: traces shortened by prune operators (prune_steps, rewrite_traces on
        the reasoning or on the answer text) and the tokens saved, reasoning and answer."""
        frame = self.rows("kept")
        parts = [(after, before) for after, before in PRUNED_TOKENS if {after, before} <= set(frame.columns)]
        if "teacher" not in frame.columns or not parts:
            self._note_missing("pruning", [before for _, before in PRUNED_TOKENS],
                               f"pruning: needs 'teacher' and a '*_tokens_before' column (written by prune_steps or "
                               f"rewrite_traces) in {self.path}; table is empty.")
            return pl.DataFrame(schema={"teacher": pl.String, "pruned": pl.UInt32, "tokens_saved": pl.Int64})
        before = pl.sum_horizontal(pl.coalesce(b, a).cast(pl.Int64) for a, b in parts)
        after = pl.sum_horizontal(pl.col(a).cast(pl.Int64) for a, _ in parts)
        pruned = pl.any_horizontal(pl.col(b).is_not_null() for _, b in parts)
        return frame.group_by("teacher").agg(
            pl.len().alias("traces"), pruned.sum().alias("pruned"),
            before.sum().alias("tokens_before"), after.sum().alias("tokens_after"),
        ).with_columns(
            tokens_saved=pl.col("tokens_before") - pl.col("tokens_after"),
            saved_share=((pl.col("tokens_before") - pl.col("tokens_after")) / pl.col("tokens_before")).round(4),
        ).sort("teacher")

    def clusters(self) -> pl.DataFrame:
        """Dedup clusters: the kept row's id and problem, the rejected members and their
        similarity to it, one row per (step, kept id)."""
        schema: dict[str, pl.DataType | type[pl.DataType]] = {
            "step": pl.String, "reason": pl.String, "kept_id": pl.String, "kept_problem": pl.String,
            "members": pl.List(pl.String), "similarities": pl.List(pl.Float64), "size": pl.UInt32,
            "min_similarity": pl.Float64, "member_problems": pl.List(pl.String),
        }
        rejected = self._rejected_by(DUPLICATE_REASONS, "clusters")
        if rejected is None or rejected.height == 0:
            return pl.DataFrame(schema=schema)
        parts = []
        for (step,), rows in rejected.group_by("step", maintain_order=True):
            id_column = self._id_column(step, rows)
            detail = pl.col("reject_detail").str.json_decode(_DUPLICATE_DETAIL)
            kept = detail.struct.field("duplicate_of")
            if "dedup_cluster" in rows.columns:
                kept = pl.coalesce(kept, pl.col("dedup_cluster"))
            parts.append(rows.select(
                "step", reason="reject_reason", kept_id=kept, member=pl.col(id_column),
                similarity=detail.struct.field("similarity"),
                member_problem=pl.col("problem") if "problem" in rows.columns else pl.lit(None, pl.String),
                id_column=pl.lit(id_column),
            ).unique(["step", "kept_id", "member"], maintain_order=True))
        members = pl.concat(parts)
        clusters = members.group_by("step", "reason", "kept_id", "id_column", maintain_order=True).agg(
            members=pl.col("member"), similarities=pl.col("similarity"),
            size=pl.len() + 1, min_similarity=pl.col("similarity").min(), member_problems=pl.col("member_problem"),
        )
        return self._with_kept_problem(clusters).select(list(schema)).sort("step", "size", descending=[False, True])

    def _with_kept_problem(self, clusters: pl.DataFrame) -> pl.DataFrame:
        rows = self.rows("all")
        if "problem" not in rows.columns:
            return clusters.with_columns(kept_problem=pl.lit(None, pl.String))
        parts = []
        for (id_column,), group in clusters.group_by("id_column"):
            if id_column not in rows.columns:
                parts.append(group.with_columns(kept_problem=pl.lit(None, pl.String)))
                continue
            texts = rows.select(kept_id=pl.col(id_column), kept_problem=pl.col("problem")).unique("kept_id")
            parts.append(group.join(texts, on="kept_id", how="left"))
        return pl.concat(parts)

    def _id_column(self, step: str, rows: pl.DataFrame) -> str:
        """Which column names the rows in this step's reject_detail (the step's id_column)."""
        record = self.run.step(step)
        config = record.config if record is not None else {}
        traces = "near_copy_trace" in rows["reject_reason"] or (
            record is not None and record.can_reject(("near_copy_trace",))
        )
        default = "trace_id" if traces else "problem_id"
        column = config.get("id_column", default)
        return column if column in rows.columns else "problem_id"

    def contamination(self) -> pl.DataFrame:
        """Decontamination hits: one row per training problem removed, with the eval
        problem it matched, the method and the score."""
        schema = {"step": pl.String, "problem_id": pl.String, "problem": pl.String, "match": pl.String,
                  "method": pl.String, "score": pl.Float64, "shared_ngrams": pl.Int64, "eval_set": pl.String,
                  "eval_id": pl.String, "eval_problem": pl.String, "traces": pl.UInt32}
        rejected = self._rejected_by(CONTAMINATION_REASONS, "contamination")
        if rejected is None or not self._has(rejected, ("problem_id",), "contamination"):
            return pl.DataFrame(schema=schema)
        detail = pl.col("reject_detail").str.json_decode(_CONTAMINATION_DETAIL)
        problem = pl.col("problem") if "problem" in rejected.columns else pl.lit(None, pl.String)
        return (
            rejected.with_columns(detail=detail, problem=problem)
            .group_by("step", "problem_id", maintain_order=True)
            .agg(pl.col("problem").first(), pl.col("detail").first(), traces=pl.len())
            .unnest("detail").select(list(schema)).sort("score", descending=True, nulls_last=True)
        )

    def number_guard(self) -> pl.DataFrame:
        """Per dedup or decontamination step: pairs the number guard kept apart, pairs merged
        on agreeing numbers, templates, same-problem and same-template matches (step metrics)."""
        rows = [{"step": s.id, "op": s.op, **{m: s.metrics.get(m) for m in _GUARD_METRICS}}
                for s in self.steps if any(m in s.metrics for m in _GUARD_METRICS)]
        schema = {"step": pl.String, "op": pl.String, **dict.fromkeys(_GUARD_METRICS, pl.Int64)}
        return pl.DataFrame(rows, schema=schema)

    def _note_missing(self, table: str, columns: list[str], note: str) -> None:
        """A table without its data: a note when a step of this run should have written one
        of `columns`; when no step of the recipe makes them, only that it has no such step."""
        from curate.catalogue import registry

        makers = sorted(name for name, op in registry().items() if set(columns) & set(op.adds))
        if makers and not set(makers) & {step.op for step in self.steps}:
            self.absent.append(f"{table} (made by {', '.join(makers)})")
        else:
            self.notes.append(note)

    def _rejected_by(self, reasons: tuple[str, ...], table: str) -> pl.DataFrame | None:
        """Rejected rows with one of `reasons`, or from a step whose operator declares one."""
        if self.kind == "published":
            return None
        if not self._has(self.rejections, ("step", "reject_reason", "reject_detail"), table):
            return None
        steps = [s.id for s in self.steps if s.can_reject(reasons)]
        return self.rejections.filter(
            pl.col("reject_reason").is_in(list(reasons)) | pl.col("step").is_in(steps)
        ).with_columns(pl.col("reject_detail").cast(pl.String))

    def samples(self, per_band: int = 3, seed: int = 0, scope: Scope = "kept") -> pl.DataFrame:
        """Up to `per_band` rows of each difficulty band, hardest band first (a seeded pick)."""
        frame = self.rows(scope)
        if not self._has(frame, ("band",), "samples"):
            return pl.DataFrame(schema={"band": pl.String})
        columns = [c for c in ("band", "pass_rate", "teacher", "correct", "reasoning_tokens", "problem_id",
                               "trace_id", "problem", "reference_answer", "reasoning", "answer_text")
                   if c in frame.columns]
        order = self.bands(scope)["band"].to_list()
        picked = (
            frame.with_columns(pl.col("band").fill_null("ungraded"))
            .sample(fraction=1.0, shuffle=True, seed=seed)
            .filter(pl.int_range(pl.len()).over("band") < per_band)
        )
        return (picked.with_columns(band_order=pl.col("band").replace_strict(order, range(len(order)), default=None))
                .sort("band_order", "problem_id" if "problem_id" in columns else "band")
                .select(columns))

    def summary(self) -> dict:
        """Headline numbers for a report header."""
        facts = {"path": str(self.path), "kind": self.kind, "rows": self.output.height,
                 "rejected": self.rejections.height}
        for key in ("problem_id", "teacher"):
            if key in self.output.columns:
                facts[f"{key}s" if key == "teacher" else "problems"] = self.output[key].n_unique()
        return facts


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - polars and Arrow raise many kinds for a damaged file
        raise AuditError(f"{path}: not a readable parquet file ({' '.join(str(error).split())[:200]})") from None


def _read_json(path: Path) -> dict:
    return read_json_object(path, AuditError)
