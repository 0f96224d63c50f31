"""`compare`: does dataset A make a better student than dataset B?

The same student is trained on each dataset with identical settings and seed, both
students are evaluated on the same held-out problems, and the difference in pass@1 is
reported with a confidence interval from the paired per-problem differences (each
problem is scored under both arms, so problem difficulty cancels out).
Make B a random subset of A's pool of the same size with the `sample` operator
(`by: trace_id`, `n:` the size of A) to ask whether curation beat chance.

An arm may train a second stage on its student (`then:`), e.g. SFT-only against SFT then
DPO on the same version's preference pairs:

    datasets: {sft: published/v3, sft_dpo: published/v3}
    then: {sft_dpo: {method: dpo, learning_rate: 5.0e-7}}

Arms with the same dataset share one SFT run (same settings and seed give the same student).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Literal, cast

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.core.io import write_json
from curate.evals.evaluate import EvalConfig, EvalReport, evaluate
from curate.train.config import TrainConfig


def train_sft(config: TrainConfig) -> Path:
    """Supervised fine-tuning; the trained model's folder."""
    from curate.train.trainer import train

    return Path(train(config).model_dir)


# How an arm turns a dataset into a student: method name -> function(TrainConfig) -> model folder.
# A new training method (e.g. SFT then DPO) is one entry here and `method: NAME` in an arm.
TRAIN_METHODS: dict[str, Callable[[TrainConfig], Path]] = {"sft": train_sft}


class ArmData(BaseModel):
    """Where an arm's training rows come from; every kind is derived from the steps of one
    run of the recipe (its outputs are read, nothing is regenerated)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["recipe", "pool", "step"] = Field(
        description="recipe: the run's output, with `drop` steps switched off; pool: a random sample of a "
        "step's output (default the first generate step: unverified traces); step: a step's output as is.")
    drop: list[str] = Field(default_factory=list, description="recipe: step ids to switch off.")
    step: str | None = Field(None, description="pool/step: the step whose output is used.")
    size_of: str | None = Field(None, description="pool: draw as many rows as this arm has (equal size).")
    correct_only: bool = Field(True, description="step: keep only rows the verifier marked correct.")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ArmData:
        if self.kind == "pool" and self.size_of is None:
            raise ValueError("a pool arm needs size_of: the arm whose size it matches")
        if self.kind == "step" and self.step is None:
            raise ValueError("a step arm needs step: the step whose output it trains on")
        if self.drop and self.kind != "recipe":
            raise ValueError("drop applies to recipe arms only")
        return self


class Arm(BaseModel):
    """One student per seed: a dataset variant and the way it is trained."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Short name (also its folder name).")
    data: ArmData
    method: str = Field("sft", description=f"Training method: {', '.join(TRAIN_METHODS)}.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in TRAIN_METHODS:
            raise ValueError(f"unknown method {value!r} (known: {', '.join(TRAIN_METHODS)})")
        return value


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: dict[str, str] = Field(
        description="Exactly two arms: name -> dataset (published folder, parquet file or Hub id)."
    )
    train: TrainConfig = Field(description="Shared training settings; `dataset` and `output_dir` are set per arm.")
    eval: EvalConfig = Field(description="Shared evaluation; `model.model` is set to each arm's trained student.")
    then: dict[str, dict] = Field(
        default_factory=dict,
        description="Per arm, a second training stage started from that arm's student: fields that change "
        "`train` (e.g. {method: dpo}); it trains into <output_dir>/<name>/then/.",
    )
    output_dir: Path = Field(Path("compare"), description="Each arm trains into <output_dir>/<name>/.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the interval on the difference.")

    @field_validator("datasets")
    @classmethod
    def _two_arms(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) != 2:
            raise ValueError(f"compare needs exactly two datasets, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _then_names_arms(self) -> CompareConfig:
        for name, changes in self.then.items():
            if name not in self.datasets:
                raise ValueError(f"then: {name!r} is not an arm (arms: {', '.join(self.datasets)})")
            self.second_stage(name, Path("."), changes.get("dataset", "."))  # validates the fields now
        return self

    def second_stage(self, arm: str, student: Path, dataset: str) -> TrainConfig:
        """The arm's `then` stage: `train` with its changes, from `student`, into <arm>/then/."""
        changes = dict(self.then[arm])
        settings = self.train.model_dump() | {"dataset": dataset} | changes
        settings |= {"student": str(student), "output_dir": self.output_dir / arm / "then"}
        return TrainConfig.model_validate(settings)


@dataclass
class Difference:
    arms: tuple[str, str]
    pass1: tuple[float, float]
    difference: float  # pass1[0] - pass1[1]
    low: float
    high: float
    problems: int
    confidence: float

    def to_json(self) -> dict:
        return {"arms": list(self.arms), "pass@1": dict(zip(self.arms, self.pass1, strict=True)),
                "difference": self.difference, "interval": [self.low, self.high],
                "confidence": self.confidence, "problems": self.problems}


def paired_difference(first: pl.DataFrame, second: pl.DataFrame, names: tuple[str, str],
                      confidence: float = 0.95) -> Difference:
    """pass@1 of each arm and a normal-approximation interval on their paired difference."""
    def per_problem(traces: pl.DataFrame) -> pl.DataFrame:
        return traces.group_by("problem_id").agg(pass1=(pl.col("correct") == True).mean())  # noqa: E712

    paired = per_problem(first).join(per_problem(second), on="problem_id", how="inner", suffix="_b")
    if paired.height < 2:
        raise ValueError("the two evaluations share fewer than 2 problems: evaluate both on the same set")
    delta = paired["pass1"] - paired["pass1_b"]
    # polars types Series statistics as any Python literal; these columns are floats.
    mean = cast(float, delta.mean())
    stderr = cast(float, delta.std()) / paired.height ** 0.5
    margin = NormalDist().inv_cdf(0.5 + confidence / 2) * stderr
    pass1 = (cast(float, paired["pass1"].mean()), cast(float, paired["pass1_b"].mean()))
    return Difference(names, pass1, mean,
                      mean - margin, mean + margin, paired.height, confidence)


def compare(config: CompareConfig, problems: pl.DataFrame) -> tuple[dict[str, EvalReport], Difference]:
    """Train one student per dataset, evaluate both on `problems`, and compare them."""
    from curate.train.trainer import train

    reports = {}
    first_stage: dict[str, Path] = {}  # dataset -> its SFT student, shared by arms on one dataset
    for name, dataset in config.datasets.items():
        arm_dir = config.output_dir / name
        if dataset not in first_stage:
            first_stage[dataset] = train(config.train.model_copy(
                update={"dataset": dataset, "output_dir": arm_dir})).model_dir
        model_dir = first_stage[dataset]
        if name in config.then:
            model_dir = train(config.second_stage(name, model_dir, config.then[name].get("dataset", dataset))).model_dir
        model = config.eval.model.model_copy(update={"name": name, "model": str(model_dir)})
        reports[name] = evaluate(config.eval.model_copy(update={"model": model, "output_dir": arm_dir / "eval"}),
                                 problems)
    first, second = config.datasets
    difference = paired_difference(reports[first].traces, reports[second].traces, (first, second),
                                   config.confidence)
    write_json(difference.to_json(), config.output_dir / "compare.json")
    return reports, difference
