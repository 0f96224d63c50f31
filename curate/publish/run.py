"""Reading a finished run directory (run.json, output.parquet, rejections.parquet)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl


class RunDirError(ValueError):
    """The run directory is missing a file or a field the publish needs."""


@dataclass(frozen=True)
class Run:
    run_dir: Path
    manifest: dict
    output: pl.DataFrame
    rejections_path: Path | None

    @property
    def recipe(self) -> dict:
        return self.manifest.get("recipe") or {}

    @property
    def steps(self) -> list[dict]:
        return self.manifest.get("steps") or []

    @property
    def sources(self) -> list[dict]:
        return self.manifest.get("sources") or []

    @property
    def packages(self) -> dict:
        return self.manifest.get("packages") or {}

    def rejections(self, columns: list[str]) -> pl.DataFrame:
        """The rejected rows' `columns` that exist in the rejections table (only those are read)."""
        if self.rejections_path is None:
            return pl.DataFrame()
        present = [c for c in columns if c in pl.read_parquet_schema(self.rejections_path)]
        return pl.scan_parquet(self.rejections_path).select(present).collect()


def read_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    manifest_path = run_dir / "run.json"
    if not manifest_path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory: {manifest_path.name} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise RunDirError(f"{manifest_path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise RunDirError(f"{manifest_path}: expected a JSON object")
    for field in ("steps", "output"):
        if field not in manifest:
            raise RunDirError(f"{manifest_path}: field {field!r} is missing")
    if not manifest.get("finished_at"):
        raise RunDirError(f"{manifest_path}: the run has not finished (no 'finished_at'); publish a finished run")
    for index, step in enumerate(manifest["steps"]):
        missing = [k for k in ("id", "op", "rows_in", "rows_out") if k not in step]
        if missing:
            raise RunDirError(f"{manifest_path}: steps[{index}] lacks {', '.join(missing)}")

    output_path = run_dir / manifest["output"]
    if not output_path.is_file():
        raise RunDirError(f"{manifest_path}: output file {output_path} does not exist")
    rejections_path = run_dir / manifest.get("rejections", "rejections.parquet")
    return Run(
        run_dir=run_dir,
        manifest=manifest,
        output=pl.read_parquet(output_path),
        rejections_path=rejections_path if rejections_path.is_file() else None,
    )
