"""Versioned publishing: one immutable folder per version, built aside and renamed into place.

A dataset folder holds `<version>/{README.md, lineage.json, data/<split>-NNNNN-of-NNNNN.parquet}`,
plus `preference/<split>-NNNNN-of-NNNNN.parquet` (the `preference` config) when the run
formed preference pairs.
A publish builds the next version in a hidden `.building-*` folder and renames it into
place only when every file is written and synced, so a crash leaves no half version (the
leftover is removed by the next publish). A lock file keeps two publishes from racing.
Publishing content whose fingerprint matches an existing version writes nothing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from curate.core.io import atomic_path, file_sha256, fsync_dir, write_text
from curate.publish.card import CardFacts, render_card
from curate.publish.config import PublishConfig
from curate.publish.lineage import build_lineage, redact
from curate.publish.rows import (
    PAIR_LINEAGE_COLUMNS,
    column_types,
    data_fingerprint,
    preference_frame,
    published_frame,
    row_hashes,
)
from curate.publish.run import read_run
from curate.schema import content_hash

log = logging.getLogger("curate.publish")

LINEAGE_FILE = "lineage.json"
PREFERENCE = "preference"  # the config (and folder) holding preference pairs
# Config name -> (shard folder, key rows are matched by in `diff`).
CONFIGS = {"default": ("data", None), PREFERENCE: (PREFERENCE, "pair_id")}
_BUILDING_PREFIX = ".building-"
_COUNTER = re.compile(r"^v(\d+)$")
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# Row groups of about this many in-memory MB keep the Hub's dataset viewer responsive on
# long reasoning texts without the cost (time and size) of very small groups.
_ROW_GROUP_MB = 32


class DamagedVersionError(ValueError):
    """A published version's data files no longer match the sha256 its lineage.json records."""


@dataclass(frozen=True)
class PublishResult:
    version: str
    folder: Path
    fingerprint: str
    rows: int
    created: bool


@dataclass(frozen=True)
class DiffResult:
    v1: str
    v2: str
    key: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.v1} -> {self.v2} (by {self.key}): {len(self.added):,} added, {len(self.removed):,} removed, "
            f"{len(self.changed):,} changed, {self.unchanged:,} unchanged"
        )
        if self.columns_added or self.columns_removed:
            text += f"; columns added {self.columns_added or '[]'}, removed {self.columns_removed or '[]'}"
        return text


def publish_run(run_dir: Path, config: PublishConfig) -> PublishResult:
    """Publish the run's output as a new version of `config.output_dir`, or return the
    existing version when one already holds the same content."""
    run = read_run(run_dir)
    frame = published_frame(run, config)
    data_print = data_fingerprint(frame)
    pairs = preference_frame(run, config)
    pairs_print = data_fingerprint(pairs) if pairs is not None else ""
    # Only a version with pairs hashes them, so a run without any keeps its fingerprint.
    pairs_parts = (pairs_print, json.dumps(column_types(pairs), sort_keys=True)) if pairs is not None else ()
    fingerprint = content_hash(
        data_print,
        *pairs_parts,
        str(run.recipe.sha256 or ""),
        json.dumps(run.recipe.overrides, sort_keys=True),
        json.dumps(config.content_settings(), sort_keys=True),
        json.dumps(column_types(frame), sort_keys=True),
    )
    dataset_dir = Path(config.output_dir)
    with _locked(dataset_dir):
        _remove_unfinished_builds(dataset_dir)
        existing = _read_lineages(dataset_dir)
        for name, lineage in existing.items():
            if lineage.get("fingerprint") == fingerprint:
                check_version(dataset_dir, name, lineage)  # "already published" only if it still is
                log.info("content unchanged: %s already holds fingerprint %s", name, fingerprint)
                return PublishResult(name, dataset_dir / name, fingerprint, frame.height, created=False)
        version = config.version or _next_version(existing, config.version_scheme, frame, data_print, pairs_print)
        if version in existing or (dataset_dir / version).exists():
            raise FileExistsError(f"{dataset_dir / version} already exists with other content; choose another version")

        build_dir = Path(tempfile.mkdtemp(prefix=f"{_BUILDING_PREFIX}{version}-", dir=dataset_dir))
        build_dir.chmod(0o755)  # mkdtemp makes it owner-only
        try:
            created_at = datetime.now(UTC).isoformat(timespec="microseconds")  # orders same-second versions
            files = _write_shards(frame, build_dir, config)
            lineage = build_lineage(
                run, frame, config, version=version, fingerprint=fingerprint, data_fingerprint=data_print,
                created_at=created_at, files=files,
            )
            checksums = {"default": files_checksum(files)}
            if pairs is not None:
                pair_files = _write_shards(pairs, build_dir, config, PREFERENCE)
                lineage["configs"] = {PREFERENCE: _preference_lineage(run, pairs, pairs_print, pair_files)}
                checksums[PREFERENCE] = files_checksum(pair_files)
            lineage_text = json.dumps(lineage, indent=2, sort_keys=True, default=str) + "\n"
            write_text(redact(lineage_text), build_dir / LINEAGE_FILE)
            facts = CardFacts(version, fingerprint, created_at, len(files), str(dataset_dir / version), checksums)
            write_text(redact(render_card(run, frame, config, facts, pairs)), build_dir / "README.md")
            _make_read_only(build_dir)
            os.rename(build_dir, dataset_dir / version)
        except BaseException:
            shutil.rmtree(build_dir, ignore_errors=True)
            raise
        fsync_dir(dataset_dir)
    log.info("published %s: %d rows in %d shard(s) at %s", version, frame.height, len(files), dataset_dir / version)
    return PublishResult(version, dataset_dir / version, fingerprint, frame.height, created=True)


def list_versions(dataset_dir: Path) -> pl.DataFrame:
    """One row per published version, oldest first; `damaged` says which data file no
    longer matches its recorded sha256 (null when every file does)."""
    rows = [
        {
            "damaged": _damage(Path(dataset_dir), name, lineage),
            "version": name,
            "created_at": lineage.get("created_at"),
            "rows": lineage.get("rows"),
            "shards": len(lineage.get("files") or []),
            "bytes": sum(f.get("bytes", 0) for f in lineage.get("files") or []),
            "fingerprint": lineage.get("fingerprint"),
            "data_fingerprint": lineage.get("data_fingerprint"),
            "recipe": (lineage.get("recipe") or {}).get("name"),
            "recipe_sha256": (lineage.get("recipe") or {}).get("sha256"),
            "preference_rows": ((lineage.get("configs") or {}).get(PREFERENCE) or {}).get("rows"),
        }
        for name, lineage in _read_lineages(Path(dataset_dir)).items()
    ]
    schema = {
        "version": pl.String, "created_at": pl.String, "rows": pl.Int64, "shards": pl.Int64, "bytes": pl.Int64,
        "fingerprint": pl.String, "data_fingerprint": pl.String, "recipe": pl.String, "recipe_sha256": pl.String,
        "preference_rows": pl.Int64, "damaged": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).sort("created_at", "version")


def diff_versions(dataset_dir: Path, v1: str, v2: str, config: str = "default") -> DiffResult:
    """Rows added, removed and changed from `v1` to `v2`, matched by trace_id (problem_id
    when the versions have no trace_id; pair_id in the `preference` config); `changed`
    compares the columns both share. A version without the config counts as empty."""
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}; known: {', '.join(CONFIGS)}")
    old = read_version_rows(Path(dataset_dir), v1, config)
    new = read_version_rows(Path(dataset_dir), v2, config)
    candidates = (CONFIGS[config][1],) if CONFIGS[config][1] else ("trace_id", "problem_id")
    key = next((k for k in candidates if k and k in old.columns and k in new.columns), None)
    if key is None:
        raise ValueError(f"{v1} and {v2} share neither a trace_id nor a problem_id column to match rows by")
    for name, frame in ((v1, old), (v2, new)):
        if frame[key].is_duplicated().any():
            raise ValueError(f"version {name} has repeated {key} values; rows cannot be matched")
    shared = [c for c in old.columns if c in new.columns]
    old_hashes = old.select(key).with_columns(row_hashes(old.select(shared)).alias("old_hash"))
    new_hashes = new.select(key).with_columns(row_hashes(new.select(shared)).alias("new_hash"))
    joined = old_hashes.join(new_hashes, on=key, how="full", coalesce=True)

    def keys_where(condition: pl.Expr) -> list[str]:
        return sorted(joined.filter(condition)[key].to_list())

    both = pl.col("old_hash").is_not_null() & pl.col("new_hash").is_not_null()
    return DiffResult(
        v1=v1,
        v2=v2,
        key=key if config == "default" else f"{key}, config {config}",
        added=keys_where(pl.col("old_hash").is_null()),
        removed=keys_where(pl.col("new_hash").is_null()),
        changed=keys_where(both & (pl.col("old_hash") != pl.col("new_hash"))),
        unchanged=joined.filter(both & (pl.col("old_hash") == pl.col("new_hash"))).height,
        columns_added=[c for c in new.columns if c not in old.columns],
        columns_removed=[c for c in old.columns if c not in new.columns],
    )


def _next_version(existing: dict[str, dict], scheme: str, frame: pl.DataFrame, data_print: str,
                  pairs_print: str = "") -> str:
    if scheme == "counter":
        numbers = [int(m.group(1)) for name in existing if (m := _COUNTER.match(name))]
        return f"v{max(numbers, default=0) + 1}"
    semvers = sorted((tuple(map(int, m.groups())), name) for name in existing if (m := _SEMVER.match(name)))
    if not semvers:
        return "1.0.0"
    (major, minor, patch), latest = semvers[-1]
    previous = existing[latest]
    if previous.get("columns") != column_types(frame):
        return f"{major + 1}.0.0"
    previous_pairs = ((previous.get("configs") or {}).get(PREFERENCE) or {}).get("data_fingerprint", "")
    if previous.get("data_fingerprint") != data_print or previous_pairs != pairs_print:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _preference_lineage(run, pairs: pl.DataFrame, pairs_print: str, files: list[dict]) -> dict:
    step = run.pairs_step()
    return {
        "rows": pairs.height,
        "columns": column_types(pairs),
        "files": files,
        "data_fingerprint": pairs_print,
        "row_lineage": {"key": "pair_id", "columns": [c for c in PAIR_LINEAGE_COLUMNS if c in pairs.columns]},
        "step": {"id": step.id, "op": step.op, "config": step.config, "metrics": step.metrics},
    }


def files_checksum(files: list[dict]) -> str:
    """One digest of a config's data files: their paths and sha256, in order."""
    return content_hash(*(f"{f['path']}:{f['sha256']}" for f in files))


def _write_shards(frame: pl.DataFrame, build_dir: Path, config: PublishConfig, folder: str = "data") -> list[dict]:
    shards = max(1, min(frame.height, math.ceil(frame.estimated_size("mb") / config.shard_size_mb)))
    rows_per_shard = max(1, math.ceil(frame.height / shards))
    shards = max(1, math.ceil(frame.height / rows_per_shard))  # an empty preference config still has a file
    row_group_rows = max(100, int(_ROW_GROUP_MB * frame.height / max(frame.estimated_size("mb"), 1e-9)))
    files = []
    for index in range(shards):
        part = frame.slice(index * rows_per_shard, rows_per_shard)
        relative = f"{folder}/{config.split}-{index:05d}-of-{shards:05d}.parquet"
        path = build_dir / relative
        with atomic_path(path) as tmp:
            part.write_parquet(tmp, row_group_size=row_group_rows)
        files.append({"path": relative, "rows": part.height, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return files


def check_version(dataset_dir: Path, version: str, lineage: dict | None = None,
                  configs: tuple[str, ...] = tuple(CONFIGS)) -> None:
    """DamagedVersionError naming the first data file of `configs` that is missing, differs
    from the sha256 lineage.json records, or lies in a config's folder unrecorded (datasets
    would load it: the card's `data_files` are globs)."""
    folder = Path(dataset_dir) / version
    lineage = lineage if lineage is not None else read_lineage(Path(dataset_dir), version)
    recorded = folder / LINEAGE_FILE
    for config in configs:
        files = _config_files(lineage, config)
        if files is None:
            continue
        for entry in files:
            path = folder / str(entry.get("path", ""))
            if not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
                raise DamagedVersionError(f"{path}: missing, though {recorded} records it; the version was changed "
                                          "after it was published")
            actual = file_sha256(path)
            if actual != entry.get("sha256"):
                raise DamagedVersionError(f"{path}: sha256 {actual[:12]}… differs from the "
                                          f"{str(entry.get('sha256'))[:12]}… that {recorded} records; the version "
                                          "was changed after it was published")
        known = {str(entry.get("path")) for entry in files}
        shard_folder = folder / CONFIGS[config][0]
        # datasets' globs skip hidden files (a '.DS_Store'), so they cannot change what loads
        extra = sorted(p for p in shard_folder.rglob("*") if p.is_file() and str(p.relative_to(folder)) not in known
                       and not any(part.startswith(".") for part in p.relative_to(shard_folder).parts))
        if extra:
            raise DamagedVersionError(f"{extra[0]}: not recorded in {recorded}, yet `load_dataset` would read it; "
                                      "the version was changed after it was published")


def _damage(dataset_dir: Path, version: str, lineage: dict) -> str | None:
    try:
        check_version(dataset_dir, version, lineage)
    except DamagedVersionError as error:
        return str(error)
    return None


def _config_files(lineage: dict, config: str) -> list[dict] | None:
    """The files lineage.json records for `config` (None: the version has no such config)."""
    if config == "default":
        return list(lineage.get("files") or [])
    section = (lineage.get("configs") or {}).get(config)
    return list(section.get("files") or []) if section is not None else None


def has_config(dataset_dir: Path, version: str, config: str) -> bool:
    """Whether `version` has the named config (every version has 'default')."""
    return config == "default" or config in (read_lineage(Path(dataset_dir), version).get("configs") or {})


def read_version_rows(dataset_dir: Path, version: str, config: str = "default") -> pl.DataFrame:
    folder = dataset_dir / version
    lineage = read_lineage(dataset_dir, version)
    files = _config_files(lineage, config)
    if files is None:  # an older version, or one whose run formed no pairs: nothing to match
        return pl.DataFrame(schema={CONFIGS[config][1] or "pair_id": pl.String})
    check_version(dataset_dir, version, lineage, (config,))
    return pl.concat([pl.read_parquet(folder / f["path"]) for f in files], how="vertical")


def read_lineage(dataset_dir: Path, version: str) -> dict:
    lineage_path = dataset_dir / version / LINEAGE_FILE
    if not lineage_path.is_file():
        known = ", ".join(_read_lineages(dataset_dir)) or "none"
        raise FileNotFoundError(f"no version {version!r} in {dataset_dir} (versions: {known})")
    return json.loads(lineage_path.read_text())


def _read_lineages(dataset_dir: Path) -> dict[str, dict]:
    if not dataset_dir.is_dir():
        return {}
    lineages = {}
    for folder in sorted(dataset_dir.iterdir()):
        lineage_path = folder / LINEAGE_FILE
        if folder.name.startswith(".") or not lineage_path.is_file():
            continue
        try:
            lineages[folder.name] = json.loads(lineage_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{lineage_path}: not valid JSON ({error})") from None
    return lineages


@contextmanager
def _locked(dataset_dir: Path) -> Iterator[None]:
    dataset_dir.mkdir(parents=True, exist_ok=True)
    with open(dataset_dir / ".publish.lock", "a") as lock:  # "a": never truncates, keeps mtime
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_unfinished_builds(dataset_dir: Path) -> None:
    # Safe under the lock: no other publish is building now.
    for leftover in dataset_dir.glob(f"{_BUILDING_PREFIX}*"):
        log.warning("removing %s left by an interrupted publish", leftover)
        shutil.rmtree(leftover)


def _make_read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
