"""The operator contract, and the registry that maps recipe names to operators.

An operator is one small class: a `name`, a pydantic `Config`, the columns it reads and
adds, and `apply(frame, ctx) -> frame`, pure given its config (so any executor may run it
per batch). A filter marks rows with a `reject_reason` instead of dropping them; the
runner moves those rows to the run's rejections table, so nothing disappears silently.
Models and other heavy state are loaded in `setup`, once per process, and heavy imports
happen there too, so that importing an operator module stays cheap.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict

from curate.schema import completion_tokens


class OperatorConfig(BaseModel):
    """Base of every operator config: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _no_advance(n: int, note: str = "") -> None:
    """The default subtask bar: draws nothing."""


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
    subtask: Callable[[str, int], Callable[[int, str], None]] = lambda label, total: _no_advance

    def count(self, name: str, value: int | float = 1) -> None:
        # typeshed's Counter holds ints only; metrics may be floats (seconds, rates).
        self.metrics[name] += value  # type: ignore[assignment]


class MissingColumnsError(ValueError):
    """A frame given to an operator lacks a column the operator reads."""


def _check_input_columns(apply: Callable) -> Callable:
    """`apply`, with polars' ColumnNotFoundError (from deep inside an expression) turned into
    one naming the operator, the columns it reads that the frame lacks, and who adds them.
    Checked on failure only: operators that check their input themselves keep their message."""

    @functools.wraps(apply)
    def checked(self: Operator, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        try:
            return apply(self, frame, ctx)
        except pl.exceptions.ColumnNotFoundError:
            missing = self.input_columns() - set(frame.columns)
            if not missing:
                raise
        producers = sorted({name for name, op in _REGISTRY.items() for column in missing if column in op.adds})
        first = " or ".join(f"`{name}`" for name in producers) or "the steps that add them"
        raise MissingColumnsError(
            f"operator {self.name!r} needs column(s) {', '.join(sorted(missing))}, which the frame lacks "
            f"(it has: {', '.join(frame.columns) or 'none'}); run {first} first")

    return checked


# The config type of an operator: `class Verify(Operator[VerifyConfig])` types `self.config`.
ConfigT = TypeVar("ConfigT", bound=OperatorConfig)


class Operator(Generic[ConfigT]):
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
    # Not a ClassVar: an operator may set it per instance when its config decides (verify's judge).
    can_plan: bool = False
    # Modules besides its own whose code makes this operator's rows (e.g. the teacher engine):
    # the runner's step fingerprint covers them, so editing them reruns the step.
    code_modules: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        # Every `apply` is wrapped once, here, so that a frame without a column the operator
        # reads fails with the operator's name (see _check_input_columns), not deep in polars.
        super().__init_subclass__(**kwargs)
        if "apply" in cls.__dict__:
            cls.apply = _check_input_columns(cls.__dict__["apply"])

    def __init__(self, config: ConfigT):
        self.config: ConfigT = config

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


# Measures live in hidden columns with this prefix while a filter marks a frame.
_MEASURE_PREFIX = "__measure_"


class Filter(Operator[ConfigT]):
    """An operator that keeps or rejects rows, the one way to write a filter.

    A row filter gives its measures (`evidence`) and a reason expression over them
    (`rejects`); a filter that must see the whole frame (clustering, sampling, ranking)
    overrides `mark` instead. Either way this base counts what was rejected (`rejected`,
    and `tokens_removed` when the frame has token columns), so every filter's metrics mean
    the same thing. A filter that declares `reject_detail` in `adds` gets, for each
    rejected row, its measures as JSON there.
    """

    adds: ClassVar[tuple[str, ...]] = ("reject_reason",)

    def evidence(self) -> dict[str, pl.Expr]:
        """Measures worth showing in `reject_detail`, by name."""
        return {}

    def rejects(self, measures: dict[str, pl.Expr]) -> pl.Expr:
        """A string expression: the rejection reason, or null to keep the row. `measures`
        holds the evidence as columns (see `measure_column`)."""
        raise NotImplementedError

    @staticmethod
    def measure_column(name: str) -> str:
        """The hidden column that holds measure `name` during `mark`, `refine` and `count_extra`
        (measures may share a name with a real column, e.g. `finish_reason`)."""
        return f"{_MEASURE_PREFIX}{name}"

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """The frame with `reject_reason` set (and `reject_detail`, when declared). Row
        filters keep this default; global filters override it and fill both themselves."""
        evidence = self.evidence()
        hidden = {name: self.measure_column(name) for name in evidence}
        measured = frame.with_columns(**{hidden[name]: expr for name, expr in evidence.items()})
        reason = self.rejects({name: pl.col(hidden[name]) for name in evidence}).cast(pl.String)
        marked = self.refine(measured.with_columns(reject_reason=reason))
        if "reject_detail" not in self.adds:
            return marked
        detail = (
            pl.struct([pl.col(hidden[name]).alias(name) for name in evidence]).struct.json_encode()
            if evidence else pl.lit(None, pl.String)
        )
        return marked.with_columns(reject_detail=pl.when(pl.col("reject_reason").is_not_null()).then(detail))

    def refine(self, marked: pl.DataFrame) -> pl.DataFrame:
        """Hook for rules that need a per-row check (outside polars) on the marked rows."""
        return marked

    def count_extra(self, marked: pl.DataFrame, ctx: StepContext) -> None:
        """Hook for filters with audit metrics beyond rows and tokens (measures still present)."""

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        marked = self.mark(frame, ctx)
        rejected = marked.filter(pl.col("reject_reason").is_not_null())
        ctx.count("rejected", rejected.height)
        if {"reasoning_tokens", "answer_tokens"} <= set(marked.columns):
            ctx.count("tokens_removed", int(rejected.select(completion_tokens().sum()).item() or 0))
        self.count_extra(marked, ctx)
        return marked.drop([c for c in marked.columns if c.startswith(_MEASURE_PREFIX)])


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
_REGISTRY: dict[str, type[Operator[Any]]] = {}
OperatorT = TypeVar("OperatorT", bound=Operator[Any])


def register(cls: type[OperatorT]) -> type[OperatorT]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"operator name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Operator[Any]]]:
    """The operators registered so far, by name (`curate.catalogue.registry()` imports them all)."""
    return dict(sorted(_REGISTRY.items()))
