"""lineage.json: everything needed to say how a version was made, and to check its files."""

from __future__ import annotations

import os
import re

import polars as pl

from curate.core.versions import package_versions
from curate.publish.card import model_revisions
from curate.publish.config import PublishConfig
from curate.publish.rows import LINEAGE_COLUMNS, column_types
from curate.publish.run import Run

LINEAGE_FORMAT = 1
_PUBLISH_PACKAGES = ("curate", "polars", "pyarrow", "huggingface-hub", "datasets")
_STEP_FIELDS = ("id", "op", "fingerprint", "rows_in", "rows_out", "rejected", "status", "seconds", "config", "metrics")
# Hub user access tokens; redacted wherever text could have picked one up (e.g. a recipe).
_HUB_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def build_lineage(
    run: Run,
    frame: pl.DataFrame,
    config: PublishConfig,
    *,
    version: str,
    fingerprint: str,
    data_fingerprint: str,
    created_at: str,
    files: list[dict],
) -> dict:
    return {
        "lineage_format": LINEAGE_FORMAT,
        "version": version,
        "fingerprint": fingerprint,
        "data_fingerprint": data_fingerprint,
        "created_at": created_at,
        "split": config.split,
        "rows": frame.height,
        "columns": column_types(frame),
        "files": files,
        "row_lineage": {
            "key": "trace_id" if "trace_id" in frame.columns else "problem_id",
            "columns": [c for c in LINEAGE_COLUMNS if c in frame.columns],
        },
        "recipe": run.recipe.model_dump(mode="json"),
        "run": {k: getattr(run.manifest, k) for k in ("curate_version", "started_at", "finished_at")},
        "steps": [{k: getattr(step, k) for k in _STEP_FIELDS} for step in run.steps],
        "sources": [source.model_dump(mode="json") for source in run.sources],
        "models": _models(run),
        "packages": {"run": run.packages, "publish": package_versions(_PUBLISH_PACKAGES)},
        "publish_config": config.model_dump(mode="json"),
    }


def _models(run: Run) -> list[dict]:
    frame = run.output
    if "model" not in frame.columns:
        return []
    keys = [c for c in ("teacher", "model") if c in frame.columns]
    revisions = model_revisions(run)
    counts = frame.group_by(keys).len("rows").sort(keys)
    return [{**row, "revision": revisions.get(row["model"])} for row in counts.iter_rows(named=True)]


def redact(text: str) -> str:
    """`text` without the HF_TOKEN value or anything shaped like a Hub token."""
    token = os.environ.get("HF_TOKEN")
    if token and len(token) >= 8:
        text = text.replace(token, "<redacted>")
    return _HUB_TOKEN.sub("<redacted>", text)
