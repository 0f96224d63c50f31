"""Reading a finished run directory (run.json, output.parquet, rejections.parquet)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curate.core.rundir import (
    PAIRS,
    RecipeRecord,
    RunDir,
    RunDirError,
    RunManifest,
    SourceRecord,
    StepRecord,
)

__all__ = ["Run", "RunDirError", "read_run"]


@dataclass(frozen=True)
class Run:
    run_dir: Path
    manifest: RunManifest
    output: pl.DataFrame
    rejections_path: Path | None

    @property
    def recipe(self) -> RecipeRecord:
        return self.manifest.recipe

    @property
    def steps(self) -> list[StepRecord]:
        return self.manifest.steps

    @property
    def sources(self) -> list[SourceRecord]:
        return self.manifest.sources

    @property
    def packages(self) -> dict[str, str]:
        return self.manifest.packages

    def rejections(self, columns: list[str]) -> pl.DataFrame:
        """The rejected rows' `columns` that exist in the rejections table (only those are read)."""
        if self.rejections_path is None:
            return pl.DataFrame()
        present = [c for c in columns if c in pl.read_parquet_schema(self.rejections_path)]
        return pl.scan_parquet(self.rejections_path).select(present).collect()

    def pairs_step(self) -> StepRecord | None:
        """The last step that wrote preference pairs (a `pairs.parquet` beside its output)."""
        return next((step for step in reversed(self.steps) if step.output and self._pairs_path(step).is_file()), None)

    def pairs(self) -> pl.DataFrame | None:
        """That step's preference pairs, or None when no step formed any."""
        step = self.pairs_step()
        return pl.read_parquet(self._pairs_path(step)) if step is not None else None

    def _pairs_path(self, step: StepRecord) -> Path:
        return self.run_dir / Path(step.output).parent / PAIRS


def read_run(run_dir: Path) -> Run:
    directory = RunDir(run_dir)
    manifest = directory.read_manifest()
    manifest_path = directory.manifest_path
    for field in ("steps", "output"):
        if field not in manifest.model_fields_set:
            raise RunDirError(f"{manifest_path}: field {field!r} is missing")
    if not manifest.finished_at or manifest.output is None:
        raise RunDirError(f"{manifest_path}: the run has not finished (no 'finished_at'); publish a finished run")

    output_path = directory.root / manifest.output
    if not output_path.is_file():
        raise RunDirError(f"{manifest_path}: output file {output_path} does not exist")
    rejections_path = directory.root / (manifest.rejections or directory.rejections.name)
    try:
        output = pl.read_parquet(output_path)
    except Exception as error:  # noqa: BLE001 - polars and Arrow raise many kinds for a damaged file
        raise RunDirError(f"{output_path}: not a readable parquet file ({' '.join(str(error).split())[:200]}); "
                          f"rerun the recipe to rewrite it") from None
    return Run(
        run_dir=directory.root,
        manifest=manifest,
        output=output,
        rejections_path=rejections_path if rejections_path.is_file() else None,
    )
