"""Table schemas, the JSON Schemas generated from them, the registry listing, a light CLI."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curate.schema import TRACE_COLUMNS, conform, polars_schema, trace_id

ROOT = Path(__file__).parent.parent


def trace_row(**overrides):
    row = {c.name: None for c in TRACE_COLUMNS}
    row.update(problem_id="p1", problem="1+1?", reference_answer="2", source="s", domain="math",
               metadata="{}", teacher="t", model="m", sample_index=0, prompt="[]", completion="2",
               reasoning="", answer_text="2", prompt_tokens=3, reasoning_tokens=0, answer_tokens=1,
               finish_reason="stop", generation_params="{}")
    row["trace_id"] = trace_id("p1", "t", "m", 0, {})
    row.update(overrides)
    return row


def test_trace_table_round_trips_through_parquet(tmp_path):
    frame = conform(pl.DataFrame([trace_row(), trace_row(sample_index=1, correct=True)]), "trace")
    assert dict(list(frame.schema.items())[: len(TRACE_COLUMNS)]) == dict(polars_schema("trace"))
    frame.write_parquet(tmp_path / "t.parquet")
    back = pl.read_parquet(tmp_path / "t.parquet")
    assert back.equals(frame)
    assert back.columns[-1] == "correct"  # columns added by later stages survive conform


def test_conform_reports_missing_columns():
    frame = pl.DataFrame([trace_row()]).drop("teacher")
    try:
        conform(frame, "trace")
    except ValueError as error:
        assert "teacher" in str(error)
    else:
        raise AssertionError("conform accepted a frame without `teacher`")


def test_trace_ids_are_stable_and_distinct():
    assert trace_id("p", "t", "m", 0, {"temperature": 1}) == trace_id("p", "t", "m", 0, {"temperature": 1})
    assert trace_id("p", "t", "m", 0, {}) != trace_id("p", "t", "m", 1, {})


@pytest.mark.parametrize("plugin", [True, False], ids=["polars-hash", "hashlib fallback"])
def test_vectorised_content_hash_equals_the_scalar_one(monkeypatch, plugin):
    from curate import schema

    monkeypatch.setattr(schema, "_HASH_PLUGIN", plugin)
    parts = pl.DataFrame({"a": ["p1", "é ü", "", "x\x1fy", None], "b": ["t", "t", "0", "", "t"]})
    hashed = parts.select(schema.content_hash_expr(pl.col("a"), pl.col("b"))).to_series().to_list()
    expected = [schema.content_hash(a, b) if a is not None else None for a, b in parts.iter_rows()]
    assert hashed == expected
    assert len(set(hashed[:4])) == 4


def test_schema_files_are_current(tmp_path):
    # In a fresh process: the schemas describe the shipped operators, not test ones.
    subprocess.run([sys.executable, "-m", "curate.cli", "schema", "--directory", str(tmp_path)], check=True,
                   capture_output=True)
    for generated in sorted(tmp_path.glob("*.json")):
        committed = ROOT / "schemas" / generated.name
        assert committed.exists(), f"schemas/{generated.name} missing: run `curate schema`"
        assert json.loads(committed.read_text()) == json.loads(generated.read_text()), (
            f"schemas/{generated.name} is stale: run `curate schema`")


def test_operators_listing_shows_config_fields():
    result = subprocess.run([sys.executable, "-m", "curate.cli", "operators", "--json"], check=True,
                            capture_output=True, text=True)
    listing = json.loads(result.stdout)
    assert listing["sample"]["scope"] == "global"
    assert listing["sample"]["fields"]["seed"]["type"] == "int"
    assert listing["sample"]["fields"]["by"]["default"] == "'problem_id'"


def test_cli_import_does_not_load_heavy_libraries():
    # `curate --help` must answer fast: no torch/transformers/datasets at import time.
    code = ("import sys, curate.cli, curate.catalogue as c; c.registry(); "
            "print(sorted(m for m in ('torch','transformers','datasets','sentence_transformers','faiss',"
            "'math_verify','vllm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "[]"


def test_every_column_an_operator_adds_is_documented():
    from curate.catalogue import registry
    from curate.schema import KNOWN_COLUMNS

    undocumented = {
        f"{name}: {column}"
        for name, cls in registry().items()
        if not cls.__module__.startswith("slow_ops")  # test-only operators
        for column in cls.adds
        if column not in KNOWN_COLUMNS
    }
    assert not undocumented, f"add these to curate.schema.STAGE_COLUMNS: {sorted(undocumented)}"


def test_problem_ids_collapse_white_space_however_it_is_written():
    from curate.text import collapsed_text, nfkc

    # Every kind of white space, at either end or inside, collapses to one space or none.
    texts = pl.Series(["Find x.", "Find  x.", " Find x.", "Find x. ", "Find\tx.", "Find\nx.", "Find\u00a0x.",
                       "Find \u3000x.", "Find\u2028x.", "Find x.\n", "  ", "", "F"])
    collapsed = pl.select(collapsed_text(pl.lit(texts))).to_series()
    replaced = pl.select(nfkc(pl.lit(texts)).str.replace_all(r"\s+", " ").str.strip_chars()).to_series()
    assert collapsed.to_list() == replaced.to_list()
    assert collapsed.to_list()[:10] == ["Find x."] * 10
