"""`curate ablate`: which stage of a recipe earns its cost?

One run of the recipe is made (or found: finished steps are reused), and every arm's
training set is derived from that run's step outputs: the full output, the output with
named steps switched off (the steps before the first one switched off are copied, so only
the steps after it run again, and generations come from the response cache), a random
sample of the unverified pool at the size of another arm, or one step's output as is. Each
arm trains one student per seed and every student is evaluated on the same problems. A
cell (arm, seed) leaves `cell.json` when done and its trainer's `train.json` when trained,
so a killed ablation resumes at the cell it stopped in and never retrains a finished one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.core.io import file_sha256, write_json, write_parquet, write_text
from curate.evals.compare import TRAIN_METHODS, Arm
from curate.evals.evaluate import EvalConfig
from curate.evals.metrics import per_problem
from curate.evals.stats import Interval, bootstrap_mean, paired_bootstrap, problems_needed
from curate.evals.suite import ProblemSet, evaluate_model, problem_sets

GENERATE_OPS = ("generate", "adaptive_generate")
BASELINE = "base"


class AblateConfig(BaseModel):
    """The recipe's `ablate:` section: arms, seeds, the arm differences are taken against."""

    model_config = ConfigDict(extra="forbid")

    arms: list[Arm] = Field(min_length=2, description="Dataset variants, one student per seed each.")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Training seeds; every arm trains once per seed.")
    reference: str = Field("random", description="The arm every other arm is compared with (paired).")
    output_dir: str = Field("ablations/{name}", description="Arms, students, table, plot; {name} is the recipe name.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")

    @model_validator(mode="after")
    def _arms_refer_to_arms(self) -> AblateConfig:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique: {names}")
        if self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not an arm ({', '.join(names)})")
        for arm in self.arms:
            target = arm.data.size_of
            if target is not None and (target not in names or _arm(self.arms, target).data.kind == "pool"):
                raise ValueError(f"arm {arm.name!r}: size_of {target!r} must name a non-pool arm")
        return self


def _arm(arms: list[Arm], name: str) -> Arm:
    return next(arm for arm in arms if arm.name == name)


# ---------------------------------------------------------------- datasets of the arms

def pool_sample(pool: pl.DataFrame, size: int, seed: int) -> pl.DataFrame:
    """`size` rows drawn at random, without replacement, from the pool (all of it if smaller)."""
    return pool.sample(n=min(size, pool.height), seed=seed, shuffle=True)


def verified_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows the verifier marked correct (null, undecided, is not correct)."""
    if "correct" not in frame.columns:
        raise ValueError("a verified-only arm needs a step after verify (no 'correct' column)")
    return frame.filter(pl.col("correct") == True)  # noqa: E712


def training_rows(frame: pl.DataFrame, publish_config) -> pl.DataFrame:
    """`messages` exactly as publish writes them, plus what the table reports about a row."""
    from curate.publish.rows import messages_expr

    tokens = [c for c in ("reasoning_tokens", "answer_tokens") if c in frame.columns]
    return frame.select(
        messages_expr(frame.columns, publish_config, "ablation").alias("messages"),
        *(pl.col(c) for c in ("trace_id", "problem_id") if c in frame.columns),
        trace_tokens=pl.sum_horizontal(tokens) if tokens else pl.lit(None, pl.Int64),
    )


class ArmDatasets:
    """Each arm's training rows, derived from one finished run of the recipe."""

    def __init__(self, recipe, run_dir: Path, output_dir: Path, console):
        self.recipe, self.run_dir, self.output_dir, self.console = recipe, run_dir, output_dir, console
        manifest = json.loads((run_dir / "run.json").read_text())
        self.outputs = {step["id"]: run_dir / step["output"] for step in manifest["steps"] if step.get("output")}
        self.step_dirs = [self.outputs[s["id"]].parent for s in manifest["steps"] if s.get("output")]
        self.final = run_dir / manifest["output"]
        self._rows: dict[str, pl.DataFrame] = {}

    def step_output(self, step_id: str) -> pl.DataFrame:
        if step_id not in self.outputs:
            raise ValueError(f"no step {step_id!r} in run {self.run_dir} (steps: {', '.join(self.outputs)})")
        return pl.read_parquet(self.outputs[step_id])

    def pool_step(self) -> str:
        generating = [step.id for step in self.recipe.steps if step.op in GENERATE_OPS]
        if not generating:
            raise ValueError("the recipe has no generate step: name a pool arm's step")
        return generating[0]

    def rows(self, arms: list[Arm], arm: Arm, seed: int) -> pl.DataFrame:
        """The arm's rows for one training seed (only pool arms differ between seeds)."""
        data = arm.data
        if data.kind == "pool":
            assert data.size_of is not None, "ArmData._fields_of_kind: a pool arm has size_of"
            size = self.rows(arms, _arm(arms, data.size_of), seed).height
            return pool_sample(self.step_output(data.step or self.pool_step()), size, seed)
        if arm.name not in self._rows:
            if data.kind == "step":
                assert data.step is not None, "ArmData._fields_of_kind: a step arm has step"
                frame = self.step_output(data.step)
                self._rows[arm.name] = verified_rows(frame) if data.correct_only else frame
            elif data.drop:
                self._rows[arm.name] = self._run_without(arm.name, data.drop)
            else:
                self._rows[arm.name] = pl.read_parquet(self.final)
        return self._rows[arm.name]

    def _run_without(self, name: str, drop: list[str]) -> pl.DataFrame:
        """The recipe with `drop` switched off, in its own run folder; the steps before the
        first dropped one are copied from the main run (same fingerprints: reused as is)."""
        from curate.recipe import RecipeError, _check_columns, _LineIndex
        from curate.runner import run_recipe

        ids = [step.id for step in self.recipe.steps]
        unknown = sorted(set(drop) - set(ids))
        if unknown:
            raise ValueError(f"arm {name!r}: drop names no step of the recipe: {', '.join(unknown)} "
                             f"(steps: {', '.join(ids)})")
        steps = [step for step in self.recipe.steps if step.id not in drop]
        try:
            lines = self.recipe.lines or _LineIndex(None)  # a recipe not read from a file has no line index
            _check_columns(steps, self.recipe.sources, lines, str(self.recipe.path))
        except RecipeError as error:
            raise ValueError(f"arm {name!r}: without {', '.join(drop)}: {error}") from None
        run_dir = self.output_dir / "runs" / name
        first_dropped = min(ids.index(step_id) for step_id in drop)
        for step_dir in self.step_dirs[: first_dropped + 1]:  # load + the steps before the first dropped
            target = run_dir / "steps" / step_dir.name
            if not target.exists():
                shutil.copytree(step_dir, target)
        variant = dataclasses.replace(self.recipe, steps=steps, publish=None, train=None, eval=None)
        return pl.read_parquet(run_recipe(variant, run_dir, self.console).output)


# ---------------------------------------------------------------- running the cells

@dataclass
class Cell:
    arm: str
    seed: int
    rows: int
    trace_tokens: float | None
    sets: dict[str, pl.DataFrame]  # set name -> per-problem samples, correct, completion_tokens


def _hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class Ablation:
    def __init__(self, recipe, config: AblateConfig, console, train_methods=None, evaluate=evaluate_model):
        if recipe.train is None or recipe.eval is None:
            raise ValueError("ablate needs the recipe's train: and eval: sections (eval.model.model: student)")
        self.recipe, self.config, self.console = recipe, config, console
        self.train_methods = train_methods or TRAIN_METHODS
        self.evaluate = evaluate
        self.output_dir = Path(config.output_dir.replace("{name}", recipe.name))
        self.cache_dir = recipe.cache_dir
        self.eval_config = EvalConfig.model_validate(
            recipe.eval.model_dump(exclude={"sources", "sets"}) | {"cache_dir": recipe.cache_dir})

    def publish_config(self):
        from curate.publish.config import PublishConfig

        return self.recipe.publish or PublishConfig(output_dir=self.output_dir / "unused")

    def run(self, datasets: ArmDatasets, sets: list[ProblemSet]) -> dict:
        cells = []
        for arm in self.config.arms:
            for seed in self.config.seeds:
                cells.append(self._cell(datasets, arm, seed, sets))
        baseline = self._baseline(sets)
        report = summarise(cells, baseline, sets, self.config)
        write_json(report, self.output_dir / "ablate.json")
        write_text(markdown_table(report), self.output_dir / "ablate.md")
        plot(report, self.output_dir / "ablate.png")
        return report

    def _cell(self, datasets: ArmDatasets, arm: Arm, seed: int, sets: list[ProblemSet]) -> Cell:
        rows = training_rows(datasets.rows(self.config.arms, arm, seed), self.publish_config())
        data_file = self.output_dir / "data" / f"{arm.name}-seed{seed}.parquet"
        if not data_file.exists() or pl.read_parquet(data_file).select("messages").to_dicts() != \
                rows.select("messages").to_dicts():
            write_parquet(rows, data_file)
        train_config = self.recipe.train.model_copy(update={"dataset": str(data_file), "seed": seed})
        key = _hash({"arm": arm.model_dump(), "data": file_sha256(data_file), "seed": seed,
                     "train": train_config.model_dump(mode="json", exclude={"output_dir", "dataset"}),
                     "eval": self.eval_config.model_dump(mode="json", exclude={"cache_dir", "output_dir"}),
                     "sets": [(s.name, s.kind, s.problems["problem_id"].to_list()) for s in sets]})
        cell_dir = self.output_dir / "arms" / arm.name / f"seed{seed}-{key[:12]}"
        marker = cell_dir / "cell.json"
        # The mean of an integer column: a float, or None when no row counts tokens.
        trace_tokens = cast(float | None, rows["trace_tokens"].mean())
        if marker.exists():
            self.console.print(f"[dim]ablate {arm.name} seed {seed}: done (cached)[/dim]")
            return Cell(arm.name, seed, rows.height, trace_tokens,
                        {s.name: pl.read_parquet(cell_dir / f"{s.name}.parquet") for s in sets})
        train_config = train_config.model_copy(update={"output_dir": cell_dir / "train"})
        model_dir = cell_dir / "train" / "final"
        if not (cell_dir / "train" / "train.json").exists():  # the trainer writes it last
            self.console.print(f"[bold]ablate[/bold] {arm.name} seed {seed}: "
                               f"train ({arm.method}) on {rows.height} rows")
            model_dir = self.train_methods[arm.method](train_config)
        for checkpoint in (cell_dir / "train").glob("checkpoint-*"):
            # Training is done: a checkpoint only resumes an unfinished train. It holds the
            # optimizer state (twice the model), so 12 cells of a 135M student kept 25 GB.
            shutil.rmtree(checkpoint)
        self.console.print(f"[bold]ablate[/bold] {arm.name} seed {seed}: eval on {len(sets)} set(s)")
        results = {s.name: self._scores(str(model_dir), s, cell_dir / "eval" / s.name) for s in sets}
        for name, frame in results.items():
            write_parquet(frame, cell_dir / f"{name}.parquet")
        write_json({"arm": arm.model_dump(), "seed": seed, "rows": rows.height, "model": str(model_dir)}, marker)
        return Cell(arm.name, seed, rows.height, trace_tokens, results)

    def _baseline(self, sets: list[ProblemSet]) -> dict[str, pl.DataFrame]:
        """The untrained student on every set (one generation, then the response cache)."""
        out = self.output_dir / "baseline"
        return {s.name: self._scores(self.recipe.train.student, s, out / s.name) for s in sets}

    def _scores(self, model: str, problem_set: ProblemSet, output_dir: Path) -> pl.DataFrame:
        report = self.evaluate(self.eval_config, model, problem_set, output_dir)
        return per_problem(report.traces).select("problem_id", "samples", "correct", "completion_tokens")


def ablate(recipe, console) -> dict:
    """Run (or reuse) the recipe, derive every arm, train and evaluate every cell, report."""
    from curate.runner import run_recipe

    config = recipe.ablate
    if config is None:
        raise ValueError(f"{recipe.path}: the recipe has no `ablate:` section")
    ablation = Ablation(recipe, config, console)
    base = dataclasses.replace(recipe, publish=None, train=None, eval=None)
    result = run_recipe(base, recipe.output_dir, console)
    datasets = ArmDatasets(recipe, result.run_dir, ablation.output_dir, console)
    sets = problem_sets(recipe.eval.sources, recipe.eval.sets, recipe.path.parent)
    return ablation.run(datasets, sets)


# ---------------------------------------------------------------- the report

def _matrix(frames: list[pl.DataFrame], column: str = "pass1") -> np.ndarray:
    """seeds x problems, problems in one order for every frame: pass1, or tokens (per answer)."""
    per_sample = {"pass1": pl.col("correct") / pl.col("samples"),
                  "tokens": pl.col("completion_tokens") / pl.col("samples")}
    return np.vstack([f.sort("problem_id").with_columns(**per_sample)[column].to_numpy() for f in frames])


def summarise(cells: list[Cell], baseline: dict[str, pl.DataFrame], sets: list[ProblemSet],
              config: AblateConfig) -> dict:
    arms = [arm.name for arm in config.arms]
    by_arm = {name: [c for c in cells if c.arm == name] for name in arms}
    report: dict[str, Any] = {
        "seeds": config.seeds, "reference": config.reference, "confidence": config.confidence,
        "sets": [{"name": s.name, "kind": s.kind, "problems": s.problems.height} for s in sets], "rows": []}
    for name in [BASELINE, *arms]:
        arm_cells = by_arm.get(name, [])
        row: dict[str, Any] = {
            "arm": name, "seeds": len(arm_cells) or 1,
            "dataset_rows": float(np.mean([c.rows for c in arm_cells])) if arm_cells else None,
            "trace_tokens": _mean([c.trace_tokens for c in arm_cells]), "sets": {}}
        for problem_set in sets:
            frames = [c.sets[problem_set.name] for c in arm_cells] or [baseline[problem_set.name]]
            scores = _matrix(frames)
            sums = pl.col("samples", "correct", "completion_tokens").sum()
            totals = pl.concat(frames).select(sums).row(0, named=True)
            entry = {"pass@1": bootstrap_mean(scores, config.confidence).to_json(),
                     "pass@1_per_seed": scores.mean(axis=1).tolist(),
                     "tokens_per_answer": totals["completion_tokens"] / max(totals["samples"], 1),
                     # Mean over problems of each problem's tokens per answer, with its interval.
                     "tokens_per_answer_interval": bootstrap_mean(_matrix(frames, "tokens"),
                                                                  config.confidence).to_json(),
                     "correct_per_1k_tokens": 1000 * totals["correct"] / max(totals["completion_tokens"], 1)}
            if name != config.reference:
                reference = _matrix([c.sets[problem_set.name] for c in by_arm[config.reference]])
                difference = paired_bootstrap(scores, reference, config.confidence)
                entry["vs_reference"] = difference.to_json()
                if problem_set.kind == "in_distribution" and name != BASELINE:
                    entry["problems_needed"] = {
                        f"{delta:.2f}": problems_needed(scores, reference, delta, config.confidence)
                        for delta in (0.05, 0.10, 0.20)}
            row["sets"][problem_set.name] = entry
        report["rows"].append(row)
    return report


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def markdown_table(report: dict) -> str:
    reference = report["reference"]
    lines = []
    for problem_set in report["sets"]:
        name = problem_set["name"]
        lines += [f"**{name}** ({problem_set['kind']}, {problem_set['problems']} problems; "
                  f"pass@1 mean over seeds, {report['confidence']:.0%} bootstrap interval over problems and seeds)",
                  "",
                  f"| arm | seeds | train rows | train trace tokens | pass@1 [interval] | tokens/answer | "
                  f"tokens/answer by problem [interval] | correct per 1k tokens | vs {reference} [interval] |",
                  "|---|---:|---:|---:|---|---:|---|---:|---|"]
        for row in report["rows"]:
            entry = row["sets"][name]
            versus = entry.get("vs_reference")
            lines.append(
                f"| {row['arm']} | {row['seeds']} | {_num(row['dataset_rows'], 0)} | {_num(row['trace_tokens'], 1)} | "
                f"{_interval(entry['pass@1'])} | {entry['tokens_per_answer']:.1f} | "
                f"{_interval(entry['tokens_per_answer_interval'], digits=1)} | "
                f"{entry['correct_per_1k_tokens']:.2f} | {_interval(versus, signed=True) if versus else '-'} |")
        lines.append("")
    return "\n".join(lines)


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(value: dict, signed: bool = False, digits: int = 3) -> str:
    fmt = f"{'+' if signed else ''}.{digits}f"
    return f"{value['mean']:{fmt}} [{value['low']:{fmt}}, {value['high']:{fmt}}]"


def plot(report: dict, path: Path) -> None:
    """pass@1 with its interval, one group of bars per eval set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [row["arm"] for row in report["rows"]]
    sets = [s["name"] for s in report["sets"]]
    figure, axis = plt.subplots(figsize=(1.5 + 1.2 * len(arms) * len(sets), 3.5))
    width = 0.8 / len(sets)
    for index, name in enumerate(sets):
        values = [Interval(**row["sets"][name]["pass@1"]) for row in report["rows"]]
        positions = np.arange(len(arms)) + index * width
        axis.bar(positions, [v.mean for v in values], width, label=name,
                 yerr=[[v.mean - v.low for v in values], [v.high - v.mean for v in values]], capsize=3)
    axis.set_xticks(np.arange(len(arms)) + width * (len(sets) - 1) / 2, arms)
    axis.set_ylabel("pass@1")
    axis.set_ylim(0, 1)
    axis.legend(fontsize="small")
    axis.set_title(f"ablation: {len(report['seeds'])} seed(s) per arm, {report['confidence']:.0%} intervals")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    temporary.replace(path)
