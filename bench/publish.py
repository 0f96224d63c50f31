"""Publish throughput on a synthetic run: rows/s for a new version, a no-op republish and a
diff, against a bare `write_parquet` of the same rows (the floor for writing the data).

    python bench/publish.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from curate.publish import PublishConfig, diff_versions, publish_run
from curate.schema import content_hash


def synthetic_run(run_dir: Path, rows: int) -> pl.DataFrame:
    index = pl.int_range(rows, eager=True)
    problem = pl.format("Problem {}: what is {} + {}?", index, index * 7, index % 13)
    params = json.dumps({"temperature": 0.7, "max_tokens": 2048})
    output = pl.DataFrame({"i": index}).select(
        problem_id=index.cast(pl.String).map_elements(content_hash, return_dtype=pl.String),
        problem=problem,
        reference_answer=(index * 7 + index % 13).cast(pl.String),
        source=pl.lit("synthetic"),
        domain=pl.lit("math"),
        trace_id=pl.format("t{}", index),
        teacher=pl.when(index % 2 == 0).then(pl.lit("a")).otherwise(pl.lit("b")),
        model=pl.lit("some/model"),
        reasoning=pl.concat_str([pl.lit("Let me add the numbers step by step. " * 40), index.cast(pl.String)]),
        answer_text=pl.concat_str(
            [pl.lit("The answer is \\boxed{"), (index * 7 + index % 13).cast(pl.String), pl.lit("}.")]
        ),
        generation_params=pl.lit(params),
        reasoning_tokens=pl.lit(400, pl.Int32),
        answer_tokens=pl.lit(8, pl.Int32),
        pass_rate=(index % 5).cast(pl.Float64) / 4,
        band=pl.when(index % 5 > 2).then(pl.lit("easy")).otherwise(pl.lit("hard")),
    )
    run_dir.mkdir(parents=True)
    output.write_parquet(run_dir / "output.parquet")
    manifest = {
        "curate_version": "0.1.0", "started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:10:00Z",
        "recipe": {"name": "bench", "version": 1, "path": "bench.yaml", "sha256": "0" * 64, "text": "name: bench\n",
                   "overrides": []},
        "sources": [{"name": "synthetic", "path": None, "hub": None, "format": None, "sha256": None, "rows": rows,
                     "license": "MIT"}],
        "steps": [{"id": "generate", "op": "generate", "config": {}, "fingerprint": "f", "rows_in": rows,
                   "rows_out": rows, "rejected": {}, "seconds": 1.0, "metrics": {}, "status": "done"},
                  {"id": "verify", "op": "verify", "config": {}, "fingerprint": "g", "rows_in": rows,
                   "rows_out": rows, "rejected": {}, "seconds": 1.0, "metrics": {}, "status": "done"}],
        "output": "output.parquet", "rejections": "rejections.parquet", "packages": {"polars": pl.__version__},
    }
    (run_dir / "run.json").write_text(json.dumps(manifest))
    return output


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        output = synthetic_run(tmp / "run", args.rows)
        _, baseline = timed(lambda: output.write_parquet(tmp / "baseline.parquet"))
        config = PublishConfig(output_dir=tmp / "published", shard_size_mb=200)
        first, seconds_new = timed(lambda: publish_run(tmp / "run", config))
        again, seconds_noop = timed(lambda: publish_run(tmp / "run", config))
        assert first.created and not again.created
        changed = output.with_columns(
            answer_text=pl.when(pl.col("trace_id") == "t1").then(pl.lit("x")).otherwise("answer_text")
        )
        changed.write_parquet(tmp / "run" / "output.parquet")
        publish_run(tmp / "run", config)
        diff, seconds_diff = timed(lambda: diff_versions(config.output_dir, "v1", "v2"))
        shards = len(list((first.folder / "data").iterdir()))
        size_mb = sum(p.stat().st_size for p in (first.folder / "data").iterdir()) / 1e6
    print(f"rows: {args.rows:,} ({output.estimated_size('mb'):.0f} MB in memory; "
          f"{shards} shards, {size_mb:.0f} MB on disk)")
    print(f"baseline write_parquet : {baseline:6.2f} s  {args.rows / baseline:>10,.0f} rows/s")
    print(f"publish (new version)  : {seconds_new:6.2f} s  {args.rows / seconds_new:>10,.0f} rows/s  "
          f"({seconds_new / baseline:.1f}x baseline)")
    print(f"publish (same content) : {seconds_noop:6.2f} s  {args.rows / seconds_noop:>10,.0f} rows/s")
    print(f"diff v1 v2             : {seconds_diff:6.2f} s  {args.rows / seconds_diff:>10,.0f} rows/s  "
          f"({diff.summary()})")


if __name__ == "__main__":
    main()
