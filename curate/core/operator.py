"""The operator contract, and the registry that maps recipe names to operators.

An operator is one small class: a `name`, a pydantic `Config`, the columns it reads and
adds, and `apply(frame, ctx) -> frame`, pure given its config (so any executor may run it
per batch). A filter marks rows with a `reject_reason` instead of dropping them; the
runner moves those rows to the run's rejections table, so nothing disappears silently.
Models and other heavy state are loaded in `setup`, once per process, and heavy imports
happen there too, so that importing an operator module stays cheap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict


class OperatorConfig(BaseModel):
    """Base of every operator config: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StepContext:
    """What a step may use besides its input frame: places to cache, counters, progress."""

    step_id: str
    step_dir: Path
    cache_dir: Path
    metrics: Counter = field(default_factory=Counter)
    on_progress: Callable[[int], None] = lambda advance: None
    # A bar of its own under the step's (e.g. one per teacher): subtask(label, total)
    # returns advance(n, note) where note is shown beside the bar (e.g. "42 tok/s").
    subtask: Callable[[str, int], Callable[[int, str], None]] = lambda label, total: (lambda n, note="": None)

    def count(self, name: str, value: int | float = 1) -> None:
        self.metrics[name] += value


class Operator:
    name: ClassVar[str]
    Config: ClassVar[type[OperatorConfig]] = OperatorConfig
    # "batch": rows are independent, the runner may split the frame into chunks.
    # "global": needs the whole frame at once (grading aggregates, dedup clustering).
    scope: ClassVar[Literal["batch", "global"]] = "batch"
    # Columns read from the input and added to the output (names in curate.schema).
    reads: ClassVar[tuple[str, ...]] = ()
    adds: ClassVar[tuple[str, ...]] = ()
    # Rows per chunk for batch operators; a step's `chunk_size` overrides it.
    default_chunk_size: ClassVar[int] = 50_000
    # Every `reject_reason` the operator can emit. The runner records them with the step, and
    # the dataset card and the audit find dedup and decontamination steps by them
    # (curate.core.rundir.DUPLICATE_REASONS, CONTAMINATION_REASONS).
    reject_reasons: ClassVar[tuple[str, ...]] = ()
    # Whether `plan` can estimate this operator's requests (`curate plan` uses the first such step).
    can_plan: ClassVar[bool] = False
    # Modules besides its own whose code makes this operator's rows (e.g. the teacher engine):
    # the runner's step fingerprint covers them, so editing them reruns the step.
    code_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: OperatorConfig):
        self.config = config

    def input_columns(self) -> set[str]:
        return set(self.reads)

    def output_columns(self) -> set[str]:
        return set(self.adds)

    def resources(self) -> dict[str, float]:
        """What one worker of this operator needs on a cluster, e.g. {"num_gpus": 1}."""
        return {}

    def check_config(self, recipe_dir: Path) -> list[str]:
        """Problems `curate validate` can find without running the step (a missing file, an
        unknown model), one line each; the config's types are already checked."""
        return []

    def setup(self, ctx: StepContext) -> None:
        """Load models, open caches. Called once before the first `apply`."""

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        raise NotImplementedError

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        """One line for the run summary from the step's metrics (None: nothing to add)."""
        return None

    def plan(self, frame: pl.DataFrame, cache_dir: Path) -> tuple[object, str]:
        """For `curate plan` (when `can_plan`): a printable table of what the step would
        request on `frame`, and a note appended to the plan's heading."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Free what `setup` loaded (GPU engines above all). Called once the step's last
        `apply` in this process is over, before the next step or a train section."""


class Filter(Operator):
    """An operator that keeps or rejects rows. Subclasses give the reason expression."""

    adds = ("reject_reason",)

    def reason(self) -> pl.Expr:
        """A string expression: the rejection reason, or null to keep the row."""
        raise NotImplementedError

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        return frame.with_columns(reject_reason=self.reason().cast(pl.String))


def split_rejections(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept rows without the filter columns, rejected rows with their reason)."""
    if "reject_reason" not in frame.columns:
        return frame, frame.clear().with_columns(reject_reason=pl.lit(None, pl.String))
    rejected_mask = pl.col("reject_reason").is_not_null()
    filter_columns = [c for c in ("reject_reason", "reject_detail") if c in frame.columns]
    kept = frame.filter(~rejected_mask).drop(filter_columns)
    return kept, frame.filter(rejected_mask)


# The allow-list: operators registered by the modules `curate.catalogue` imports, and by
# installed packages that declare the `curate.operators` entry point.
_REGISTRY: dict[str, type[Operator]] = {}


def register(cls: type[Operator]) -> type[Operator]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"operator name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Operator]]:
    """The operators registered so far, by name (`curate.catalogue.registry()` imports them all)."""
    return dict(sorted(_REGISTRY.items()))
