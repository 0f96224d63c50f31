"""The run directory, typed: where each file lives and what `run.json` holds.

    RUN_DIR/
      run.json              RunManifest: recipe, sources, one StepRecord per step, packages,
                            one AttemptRecord per attempt (a resumed run adds one)
      run.lock              held (flock) by the run using the directory: pid, host, start
      output.parquet        the last step's rows
      rejections.parquet    every removed row, with `step`, `reject_reason`, `reject_detail`
      steps/NN-<id>-<fingerprint>/   one step's checkpoint: output.parquet,
                            rejections.parquet, parts/ (finished chunks), step.json (last),
                            pairs.parquet (preference_pairs steps only)

The runner writes through this module and every reader (publish, audit, the command
line) reads through it, so the layout and the manifest's fields are defined once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curate.core.io import read_json_object, write_json

MANIFEST = "run.json"
LOCK = "run.lock"
OUTPUT = "output.parquet"
REJECTIONS = "rejections.parquet"
STEPS = "steps"
STEP_MARKER = "step.json"  # written last: its presence marks a step finished
PARTS = "parts"
# Written by the preference_pairs step next to its output; publish reads it.
PAIRS = "pairs.parquet"

# Reject reasons whose meaning other parts of curate rely on (the dataset card's
# "Deduplication and decontamination" section, the audit's clusters and leaks). Operators
# that emit them declare them in their `reject_reasons`.
DUPLICATE_REASONS = ("exact_duplicate", "near_duplicate", "near_copy_trace", "template_duplicate")
CONTAMINATION_REASONS = ("contaminated", "same_template")


class _Record(BaseModel):
    # Unknown fields are kept (and written back), so a newer run.json survives an older reader.
    model_config = ConfigDict(extra="allow")


class StepRecord(_Record):
    """One step of a run, as written to its `step.json` and to `run.json`'s `steps`."""

    id: str
    op: str
    config: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = ""
    rows_in: int
    rows_out: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    metrics: dict[str, int | float] = Field(default_factory=dict)
    output: str = ""
    rejections: str = ""
    status: str = "done"
    # The reasons the step's operator declares it can emit (Operator.reject_reasons).
    reject_reasons: list[str] = Field(default_factory=list)

    def can_reject(self, reasons: tuple[str, ...] | list[str]) -> bool:
        """Whether the step may emit one of `reasons`: declared by its operator, or seen in
        its counts (runs written before operators declared their reasons)."""
        return bool(set(reasons) & (set(self.reject_reasons) | set(self.rejected)))


class RecipeRecord(_Record):
    name: str | None = None
    version: str | int | None = None
    path: str | None = None
    sha256: str | None = None
    text: str | None = None
    overrides: list[str] = Field(default_factory=list)


class SourceRecord(_Record):
    name: str | None = None
    path: str | None = None
    hub: str | None = None
    sha256: str | None = None
    rows: int | None = None
    license: str | None = None
    format: str | None = None


ATTEMPT_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "cache_hits")


class AttemptRecord(_Record):
    """One `curate run` on the run directory: a resumed run is a second attempt. Counters
    sum the step metrics of this attempt's own work (steps it ran, chunks it finished;
    steps reused from disk count nothing). Written after every chunk and step, at most once a
    second while a step counts requests or tokens, and when the attempt stops; an attempt left
    'running' was killed (counted up to its last write, about a second before the kill)."""

    started_at: str
    finished_at: str | None = None
    status: str = "running"  # running | done | failed | interrupted | killed
    seconds: float = 0.0
    steps_run: list[str] = Field(default_factory=list)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0


def attempt_totals(attempts: list[AttemptRecord]) -> dict[str, float]:
    """What the run cost over all its attempts."""
    totals: dict[str, float] = {"attempts": len(attempts), "seconds": round(sum(a.seconds for a in attempts), 3)}
    for name in ATTEMPT_COUNTERS:
        totals[name] = sum(getattr(a, name) for a in attempts)
    return totals


class RunManifest(_Record):
    """`run.json`: written after every step (finished_at, output and rejections stay null
    until the run finishes)."""

    curate_version: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    recipe: RecipeRecord = Field(default_factory=RecipeRecord)
    sources: list[SourceRecord] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    output: str | None = None
    rejections: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    attempts: list[AttemptRecord] = Field(default_factory=list)
    totals: dict[str, float] = Field(default_factory=dict)  # attempt_totals(attempts)

    def step(self, step_id: str) -> StepRecord | None:
        return next((s for s in self.steps if s.id == step_id), None)


class RunDirError(ValueError):
    """The run directory is missing a file, or its run.json is not a manifest."""


class RunDirLocked(RunDirError):
    """Another run holds the run directory."""


class RunDir:
    """Paths of one run directory, and reading/writing its manifest and step markers."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def output(self) -> Path:
        return self.root / OUTPUT

    @property
    def rejections(self) -> Path:
        return self.root / REJECTIONS

    def step_dir(self, prefix: str, fingerprint: str) -> Path:
        """`steps/<prefix>-<fingerprint[:12]>/`: a step's (or train's, eval's) checkpoint."""
        return self.root / STEPS / f"{prefix}-{fingerprint[:12]}"

    @staticmethod
    def step_prefix(index: int, step_id: str) -> str:
        """`NN-<id>` for recipe steps; index 0 is the load step."""
        return f"{index:02d}-{step_id}"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> RunManifest:
        """The parsed run.json; RunDirError when it is missing or malformed."""
        path = self.manifest_path
        if not path.is_file():
            raise RunDirError(f"{self.root} is not a run directory: {path.name} is missing")
        data = read_json_object(path, RunDirError)
        for index, step in enumerate(data.get("steps") or []):
            missing = [k for k in ("id", "op", "rows_in", "rows_out") if not isinstance(step, dict) or k not in step]
            if missing:
                raise RunDirError(f"{path}: steps[{index}] lacks {', '.join(missing)}")
        try:
            return RunManifest.model_validate(data)
        except ValidationError as error:
            raise RunDirError(f"{path}: not a run manifest ({error.errors()[0]['msg']} at "
                              f"{'.'.join(str(part) for part in error.errors()[0]['loc'])})") from None

    def write_manifest(self, manifest: RunManifest) -> None:
        write_json(manifest.model_dump(mode="json"), self.manifest_path)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory for one run: RunDirLocked (naming the holder's pid, host and
        start) while another run holds it. The lock is an flock on `run.lock`, which the
        kernel drops when its process dies, so a stale lock (a killed run's file) is simply
        taken over; the holder's details in the file are only ever read while it is held."""
        created = [folder for folder in (self.root, *self.root.parents) if not folder.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirLocked(f"{self.root} is in use by another run ({_holder(path)}); "
                                   "wait for it to finish or use another output directory") from None
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            left = {entry.name for entry in self.root.iterdir()}
            if created and sys.exc_info()[0] is not None and left <= {LOCK, MANIFEST}:
                # A new run that failed before its first step (bad input) leaves nothing behind.
                for name in left:
                    (self.root / name).unlink()
                for folder in created:
                    folder.rmdir()


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started_at']}; lock file {path}"
    except (OSError, ValueError, KeyError, TypeError):  # written in the instant after locking
        return f"lock file {path}"


def read_step_marker(step_dir: Path) -> StepRecord | None:
    """The finished step's record, or None when the step has not finished."""
    marker = Path(step_dir) / STEP_MARKER
    if not marker.exists():
        return None
    return StepRecord.model_validate_json(marker.read_text())


def write_step_marker(record: StepRecord, step_dir: Path) -> None:
    write_json(record.model_dump(mode="json"), Path(step_dir) / STEP_MARKER)
