"""Run a recipe: load the sources, run each step, checkpoint everything, summarise.

Every step's output lives in `steps/NN-<id>-<fingerprint>/` of the run directory. The
fingerprint covers the step's input (the previous fingerprint), its operator, config and
code, so a rerun skips every step whose folder is complete (`step.json` is written last),
and a changed config reruns that step and the ones after it. Batch operators checkpoint
each chunk as it finishes, so an interrupted step resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import curate
from curate.core.executor import LocalExecutor
from curate.core.io import write_json, write_parquet, write_text
from curate.core.operator import StepContext, split_rejections
from curate.core.paths import default_cache_dir as _default_cache_dir
from curate.core.rundir import (
    ATTEMPT_COUNTERS,
    PARTS,
    STEP_MARKER,
    AttemptRecord,
    RecipeRecord,
    RunDir,
    RunDirError,
    RunManifest,
    SourceRecord,
    StepRecord,
    attempt_totals,
    read_step_marker,
    write_step_marker,
)
from curate.core.versions import package_versions
from curate.errors import UserError
from curate.preflight import output_dir_problems
from curate.recipe import EvalSection, Recipe, RecipeError, Step, makes_traces
from curate.schema import PROBLEM_COLUMNS
from curate.sources.problems import load_problems, source_fingerprint
from curate.sources.traces import import_traces, load_traces
from curate.train.config import TrainConfig

PACKAGES = ("curate", "polars", "datasets", "transformers", "torch", "sentence-transformers",
            "faiss-cpu", "math-verify", "vllm", "trl", "peft")


@dataclass
class RunResult:
    run_dir: Path
    output: Path
    steps: list[StepRecord]
    seconds: float
    published: object | None = None  # curate.publish.PublishResult when the recipe publishes
    trained: dict | None = None  # curate.train.TrainResult.to_json() when the recipe trains
    evaluated: dict | None = None  # curate.evals.EvalReport.to_json() when the recipe evaluates


def default_cache_dir(recipe: Recipe) -> Path:
    return recipe.cache_dir or _default_cache_dir()


def run_recipe(recipe: Recipe, output_dir: Path | None = None, console: Console | None = None,
               executor=None) -> RunResult:
    """Run `recipe`; `executor` runs batch steps (default: LocalExecutor, in this process)."""
    console = console or Console(stderr=True)
    run = _Run(recipe, Path(output_dir or recipe.output_dir), default_cache_dir(recipe), console,
               executor or LocalExecutor())
    return run.execute()


class _Run:
    def __init__(self, recipe: Recipe, run_dir: Path, cache_dir: Path, console: Console, executor):
        self.executor = executor
        self.recipe = recipe
        self.run_dir = run_dir
        self.dir = RunDir(run_dir)
        self.cache_dir = cache_dir
        self.console = console
        self.records: list[StepRecord] = []
        self.started_at = _now()
        self.sources: list[dict] = []

    def execute(self) -> RunResult:
        problems = output_dir_problems(self.recipe, self.run_dir)  # before the lock: nothing written
        if problems:
            raise RecipeError(problems)
        with self.dir.lock():  # one run per run dir at a time (RunDirLocked names the holder)
            self._start_attempt()
            try:
                result = self._execute()
            except BaseException as error:
                self._end_attempt("interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
                raise
            self._end_attempt("done")
            return result

    def _start_attempt(self) -> None:
        """Earlier attempts on this run dir are kept (a run still 'running' there was killed)."""
        self.previous: list[AttemptRecord] = []
        if self.dir.has_manifest():
            try:
                previous = self.dir.read_manifest()
            except RunDirError:
                previous = None
            if previous is not None:
                self.previous = previous.attempts
                self.started_at = previous.started_at or self.started_at
        for attempt in self.previous:
            if attempt.status == "running":
                attempt.status = "killed"
        self.attempt = AttemptRecord(started_at=_now())
        self.attempt_clock = time.perf_counter()
        self.attempt_counts: Counter = Counter()  # finished steps of this attempt
        self.live_metrics: Counter = Counter()  # the step running now
        self.counts_written = 0.0  # perf_counter of the last run.json write
        self.steps_done = False  # output.parquet and rejections written

    def _update_attempt(self) -> None:
        counts = self.attempt_counts + Counter({k: v for k, v in self.live_metrics.items() if k in ATTEMPT_COUNTERS})
        for name in ATTEMPT_COUNTERS:
            setattr(self.attempt, name, int(counts.get(name, 0)))
        self.attempt.seconds = round(time.perf_counter() - self.attempt_clock, 3)

    def _end_attempt(self, status: str) -> None:
        self.attempt.status = status
        self.attempt.finished_at = _now()
        # The steps' output stays finished when what follows them (publish, train) fails.
        self._write_manifest(finished=(status == "done" or self.steps_done) and self.dir.output.exists())

    def _execute(self) -> RunResult:
        started = time.perf_counter()
        with _progress(self.console) as progress:
            frame, imported, fingerprint = self._load(progress)
            for index, step in enumerate(self.recipe.steps, start=1):
                frame, fingerprint = self._step(index, step, frame, fingerprint, progress)
                if imported is not None and makes_traces(step):
                    # Imported traces join the generated ones: problem steps before this one
                    # worked on the problem sources only (see recipe.check_columns).
                    frame, imported = pl.concat([frame, imported], how="diagonal_relaxed"), None
        output = self.dir.output
        write_parquet(frame, output)
        self._write_rejections()
        self._write_manifest(finished=True)
        self.steps_done = True
        result = RunResult(self.run_dir, output, self.records, time.perf_counter() - started)
        if self.recipe.publish is not None:
            from curate.publish import publish_run

            if frame.height == 0:
                raise nothing_to_publish(self.run_dir, self.records)
            result.published = publish_run(self.run_dir, self.recipe.publish)
        if self.recipe.train is not None:
            result.trained = self._train(self.recipe.train, result.published)
        if self.recipe.eval is not None:
            result.evaluated = self._evaluate(self.recipe.eval, result.trained)
        result.seconds = time.perf_counter() - started
        return result

    def _train(self, config: TrainConfig, published) -> dict:
        """Train once per (config, dataset): a finished training is found by its fingerprint,
        and its own checkpoints resume an interrupted one. Each fingerprint trains into its
        own folder, so an evaluation's response cache never mixes two students."""
        if config.dataset is None and published is not None:
            config = config.model_copy(update={"dataset": str(published.folder)})
        dataset_key = published.fingerprint if published is not None else config.dataset
        fingerprint, step_dir, done = self._checkpoint(
            "train", {"train": config.model_dump(mode="json"), "dataset": dataset_key}, "result.json")
        if done:
            return json.loads(done.read_text())
        config = config.model_copy(update={"output_dir": config.output_dir / fingerprint[:12]})
        from curate.train import train

        self.console.print(f"[bold]train[/bold]: {config.student} on {config.dataset} -> {config.output_dir}")
        trained = train(config).to_json()
        write_json(trained, step_dir / "result.json")
        return trained

    def _evaluate(self, section: EvalSection, trained: dict | None) -> dict:
        """Evaluate on every eval set; a trained student is also compared with the model it
        started from (before/after, paired per problem), and its README gets the table."""
        from curate.evals import EvalConfig
        from curate.evals.suite import before_after, problem_sets, student_card

        model, baseline, card = section.model.model, None, None
        if model == "student":
            if trained is None:
                raise ValueError("eval.model.model is 'student' but the recipe has no train section")
            assert self.recipe.train is not None, "a trained student comes from the train section"
            model, baseline = trained["model_dir"], self.recipe.train.student
            card = Path(trained["output_dir"]) / "README.md"
        config = section.model_copy(update={"model": section.model.model_copy(update={"model": model})})
        _, step_dir, done = self._checkpoint("eval", {
            "eval": config.model_dump(mode="json"), "baseline": baseline,
            "sources": [source_fingerprint(s, self.recipe.path.parent) for s in section.sources],
            "sets": [[source_fingerprint(s, self.recipe.path.parent) for s in entry.sources or []]
                     for entry in section.sets]}, "result.json")
        if done:
            return json.loads(done.read_text())
        self.console.print(f"[bold]eval[/bold]: {model} on {1 + len(section.sets)} set(s)"
                           + (f", and its starting model {baseline}" if baseline else ""))
        sets = problem_sets(section.sources, section.sets, self.recipe.path.parent)
        eval_config = EvalConfig.model_validate(config.model_dump(exclude={"sources", "sets"}) | {
            "cache_dir": self.cache_dir})
        evaluated = before_after(eval_config, model, baseline, sets, step_dir)
        if card is not None:
            write_text(student_card(evaluated, model), card)
        write_json(evaluated, step_dir / "result.json")
        return evaluated

    def _load(self, progress: Progress) -> tuple[pl.DataFrame, pl.DataFrame | None, str]:
        """(problem table, imported traces or None, fingerprint). Without a step that
        generates traces, the imported traces are the frame the steps start from."""
        recipe_dir = self.recipe.path.parent
        sources = [source_fingerprint(s, recipe_dir) for s in self.recipe.sources]
        self.sources = sources
        fingerprint, step_dir, done = self._checkpoint(RunDir.step_prefix(0, "load"), {
            "sources": sources, "code": [_code_version(load_problems), _code_version(load_traces)]})
        imported_path = step_dir / "imported.parquet"
        task = progress.add_task("load", total=len(self.recipe.sources))
        if self._reuse(done):
            progress.update(task, completed=len(self.recipe.sources), description="load (cached)")
            imported = pl.read_parquet(imported_path) if imported_path.exists() else None
            return pl.read_parquet(step_dir / "output.parquet"), imported, fingerprint
        started = time.perf_counter()
        problems, traces, skipped = [], [], []
        for source, source_record in zip(self.recipe.sources, sources, strict=True):
            if source.kind == "traces":
                frame, skipped_rows = import_traces(source, recipe_dir, self.cache_dir)
                traces.append(frame)
                if skipped_rows.height:  # on_empty: skip
                    skipped.append(skipped_rows)
                    source_record["skipped"] = skipped_rows.height
            else:
                frame = load_problems(source, recipe_dir)
                problems.append(frame)
            source_record["rows"] = frame.height
            progress.advance(task)
        frame = pl.concat(problems) if problems else pl.DataFrame(schema={c.name: c.dtype for c in PROBLEM_COLUMNS})
        imported = pl.concat(traces) if traces else None
        if imported is not None and not any(makes_traces(step) for step in self.recipe.steps):
            frame, imported = imported, None  # a trace-only recipe: the traces are the frame
        if imported is not None:
            write_parquet(imported, imported_path)
        rejected = pl.concat(skipped, how="diagonal_relaxed") if skipped else frame.clear()
        # rows_in and rows_out count the frame's rows: skipped traces count in only when the
        # traces are the frame (next to problem sources, the traces wait in imported.parquet).
        skipped_in_frame = rejected.height if imported is None else 0
        metrics = {"imported_traces": sum(f.height for f in traces), "skipped_traces": rejected.height}
        record = StepRecord(id="load", op="load", config={"sources": [s["config"] for s in sources]},
                            fingerprint=fingerprint, rows_in=frame.height + skipped_in_frame, rows_out=frame.height,
                            metrics=metrics if traces else {}, reject_reasons=["empty_completion"] if skipped else [])
        self._finish(step_dir, record, frame, rejected, started)
        return frame, imported, fingerprint

    def _step(self, index: int, step: Step, frame: pl.DataFrame, previous: str, progress: Progress):
        fingerprint, step_dir, done = self._checkpoint(
            RunDir.step_prefix(index, step.id), {"input": previous, "op": step.op, "config": step.config,
                                                   "code": _code_version(type(step.operator))})
        task = progress.add_task(step.id, total=max(frame.height, 1))
        if self._reuse(done):
            progress.update(task, completed=max(frame.height, 1), description=f"{step.id} (cached)")
            return pl.read_parquet(step_dir / "output.parquet"), fingerprint
        started = time.perf_counter()
        ctx = StepContext(step_id=step.id, step_dir=step_dir, cache_dir=self.cache_dir,
                          metrics=_LiveCounts(self._counts_changed))
        ctx.on_progress = lambda advance: progress.advance(task, advance)
        ctx.subtask = lambda label, total: _subtask(progress, label, total)
        self.attempt.steps_run.append(step.id)
        self.live_metrics = ctx.metrics

        def chunk_done(rows: int) -> None:
            progress.advance(task, rows)
            self._write_manifest(finished=False)  # a killed attempt keeps its count up to here

        if step.operator.scope == "batch":
            result = self.executor.run_batch(step.operator, frame, step.chunk_size, ctx, chunk_done)
        else:  # global steps need the whole frame: they run here, in the driver
            step.operator.setup(ctx)
            try:
                result = step.operator.apply(frame, ctx)
            finally:
                step.operator.teardown()
        progress.update(task, completed=max(frame.height, 1))
        kept, rejected = split_rejections(result)
        record = StepRecord(id=step.id, op=step.op, config=step.config, fingerprint=fingerprint,
                            rows_in=frame.height, metrics=dict(ctx.metrics),
                            reject_reasons=list(step.operator.reject_reasons))
        self._finish(step_dir, record, kept, rejected, started)
        return kept, fingerprint

    def _checkpoint(self, prefix: str, payload: dict, marker: str = STEP_MARKER) -> tuple[str, Path, Path | None]:
        """fingerprint of `payload` -> its folder `steps/<prefix>-<fingerprint[:12]>` -> the
        folder's marker file when the work there has finished (None otherwise)."""
        fingerprint = _hash(payload)
        step_dir = self.dir.step_dir(prefix, fingerprint)
        done = step_dir / marker
        return fingerprint, step_dir, done if done.exists() else None

    def _reuse(self, marker: Path | None) -> bool:
        """Record a finished step found on disk as cached; False when it has not finished."""
        record = read_step_marker(marker.parent) if marker is not None else None
        if record is None:
            return False
        record.status = "cached"
        self.records.append(record)
        return True

    def _finish(self, step_dir: Path, record: StepRecord, kept: pl.DataFrame, rejected: pl.DataFrame,
                started: float) -> None:
        write_parquet(kept, step_dir / "output.parquet")
        write_parquet(rejected.with_columns(step=pl.lit(record.id)), step_dir / "rejections.parquet")
        record.rows_out = kept.height
        if rejected.height:
            counts = rejected.group_by("reject_reason").len().sort("len", descending=True)
            record.rejected = dict(zip(counts["reject_reason"], counts["len"], strict=True))
        record.seconds = round(time.perf_counter() - started, 3)
        record.output = self.dir.relative(step_dir / "output.parquet")
        record.rejections = self.dir.relative(step_dir / "rejections.parquet")
        # step.json last: its presence is what marks the step finished.
        write_step_marker(record, step_dir)
        for part in sorted((step_dir / PARTS).glob("*.parquet")):
            part.unlink()
        self.records.append(record)
        self.attempt_counts.update({k: v for k, v in record.metrics.items() if k in ATTEMPT_COUNTERS})
        self.live_metrics = Counter()
        self._write_manifest(finished=False)

    def _counts_changed(self) -> None:
        """A request or token was counted: run.json follows, at most once per interval, so
        an attempt killed mid-step has counted what it spent up to then."""
        if time.perf_counter() - self.counts_written >= _COUNTS_INTERVAL_S:
            self._write_manifest(finished=False)

    def _write_rejections(self) -> None:
        frames = [pl.read_parquet(self.run_dir / r.rejections) for r in self.records if r.rejections]
        frames = [f for f in frames if f.height]
        rejections = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
            schema={"step": pl.String, "reject_reason": pl.String, "reject_detail": pl.String})
        if "reject_detail" not in rejections.columns:
            rejections = rejections.with_columns(reject_detail=pl.lit(None, pl.String))
        write_parquet(rejections, self.dir.rejections)

    def _write_manifest(self, finished: bool) -> None:
        recipe = self.recipe
        self.counts_written = time.perf_counter()
        self._update_attempt()
        attempts = [*self.previous, self.attempt]
        self.dir.write_manifest(RunManifest(
            curate_version=curate.__version__,
            started_at=self.started_at,
            finished_at=_now() if finished else None,
            recipe=RecipeRecord(name=recipe.name, version=recipe.version, path=str(recipe.path),
                                sha256=recipe.sha256, text=recipe.text, overrides=recipe.overrides),
            sources=[SourceRecord(**{k: s.get(k) for k in ("name", "path", "hub", "sha256", "rows", "license")},
                                  format=s["config"].get("format")) for s in self.sources],
            steps=self.records,
            output=self.dir.output.name if finished else None,
            rejections=self.dir.rejections.name if finished else None,
            packages=package_versions(PACKAGES),
            attempts=attempts,
            totals=attempt_totals(attempts),
        ))


def nothing_to_publish(run_dir: Path, steps: list[StepRecord]) -> UserError:
    """The error for a run that finished with every row rejected: which steps rejected them."""
    rejecting = [(step.id, sum(step.rejected.values()), max(step.rejected, key=step.rejected.__getitem__))
                 for step in steps if step.rejected]
    where = "; ".join(f"{step} rejected {count:,} (mostly {reason})" for step, count, reason in rejecting)
    return UserError(str(run_dir), f"the run finished, but no row is left to publish ({where or 'no input rows'})",
                     f"see why in {run_dir / 'rejections.parquet'} or `curate audit {run_dir}`, then loosen "
                     "those steps; finished steps are reused")


# How often, at most, a running step's request and token counts are written to run.json.
_COUNTS_INTERVAL_S = 1.0


class _LiveCounts(Counter):
    """A step's metrics that call `on_count` whenever an attempt counter (requests, tokens,
    cache hits) changes."""

    def __init__(self, on_count: Callable[[], None]):
        self.on_count = on_count
        super().__init__()

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if key in ATTEMPT_COUNTERS:
            self.on_count()


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _subtask(progress: Progress, label: str, total: int):
    task = progress.add_task(f"  {label}", total=max(total, 1))

    def advance(rows: int, note: str = "") -> None:
        progress.update(task, advance=rows, description=f"  {label} {note}".rstrip())

    return advance


def _hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _code_version(obj) -> str:
    """curate's version plus a hash of the module that defines `obj`, and of the modules it
    names in `code_modules` (code it runs that lives elsewhere, e.g. the teacher engine):
    editing an operator invalidates its checkpoints, editing another one does not."""
    module = inspect.getmodule(obj)
    assert module is not None, f"{obj!r} is defined in no module"
    modules = [module, *(importlib.import_module(m) for m in getattr(obj, "code_modules", ()))]
    source = "".join(inspect.getsource(module) for module in modules)
    return f"{curate.__version__}+{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
