"""Audit tables and the HTML report, checked against direct polars computations on the
two-teacher MATH-500 fixture run (tests/fixtures/publish/run, read-only: copied when changed)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from curate.audit import Audit, AuditError, audit_command, render_report
from curate.prune.filters import DEFAULT_HESITATION_MARKERS

RUN = Path(__file__).parent / "fixtures" / "publish" / "run"


@pytest.fixture(scope="module")
def audit() -> Audit:
    return Audit.open(RUN)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((RUN / "run.json").read_text())


@pytest.fixture(scope="module")
def all_traces() -> pl.DataFrame:
    rejected = pl.read_parquet(RUN / "rejections.parquet").filter(pl.col("trace_id").is_not_null())
    return pl.concat([pl.read_parquet(RUN / "output.parquet"), rejected], how="diagonal_relaxed")


def copy_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    return run_dir


def test_funnel_matches_run_json(audit, manifest):
    funnel = audit.funnel()
    assert funnel["step"].to_list() == [s["id"] for s in manifest["steps"]]
    assert funnel["rows_out"].to_list() == [s["rows_out"] for s in manifest["steps"]]
    assert funnel["rejected"].to_list() == [sum(s["rejected"].values()) for s in manifest["steps"]]
    assert funnel["rows_out"][-1] == pl.read_parquet(RUN / "output.parquet").height


def test_rejection_reasons_match_the_rejections_table(audit):
    direct = (pl.read_parquet(RUN / "rejections.parquet").group_by("step", "reject_reason").len()
              .sort("step", "reject_reason"))
    reasons = audit.rejection_reasons()
    assert reasons.select("step", "reason", "in_table").rows() == direct.rows()
    assert reasons["rows"].to_list() == reasons["in_table"].to_list()


def test_teacher_stats_cover_every_generated_trace(audit, all_traces):
    teachers = audit.teachers()
    direct = all_traces.group_by("teacher").agg(
        traces=pl.len(), accuracy=pl.col("correct").cast(pl.Float64).mean(),
        median=pl.col("reasoning_tokens").median(), truncation=(pl.col("finish_reason") == "length").mean(),
    ).sort("teacher")
    assert teachers["teacher"].to_list() == direct["teacher"].to_list()
    assert teachers["traces"].to_list() == direct["traces"].to_list()
    assert teachers["accuracy"].to_list() == pytest.approx(direct["accuracy"].to_list(), abs=1e-4)
    assert teachers["reasoning_tokens_median"].to_list() == direct["median"].to_list()
    assert teachers["truncation_rate"].to_list() == pytest.approx(direct["truncation"].to_list())
    # Rejected traces count: kept < traces, and the wrong answers are in the accuracy.
    assert teachers["kept"].sum() == pl.read_parquet(RUN / "output.parquet").height
    assert (teachers["accuracy"] < 1).all()


def test_hesitation_counts_match_a_plain_regex(audit, all_traces):
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(m) for m in DEFAULT_HESITATION_MARKERS) + r")\b", re.I)
    expected = {}
    for teacher, reasoning in all_traces.select("teacher", "reasoning").iter_rows():
        expected[teacher] = expected.get(teacher, 0) + len(pattern.findall(reasoning))
    counted = dict(audit.teachers().select("teacher", "hesitations").iter_rows())
    assert counted == expected
    assert expected["sky-t1"] > expected["qwen25-14b"]  # long-CoT teacher hesitates more


def test_bands_and_samples(audit):
    output = pl.read_parquet(RUN / "output.parquet")
    direct = output.group_by("band").agg(problems=pl.col("problem_id").n_unique(), traces=pl.len())
    bands = audit.bands()
    assert sorted(bands.select("band", "problems", "traces").rows()) == sorted(direct.rows())
    assert bands["share"].sum() == pytest.approx(1.0)
    assert bands["pass_rate_mean"].is_sorted()  # hardest band first
    samples = audit.samples(per_band=2)
    expected = direct.select(pl.col("band"), pl.min_horizontal("traces", pl.lit(2)).alias("n"))
    assert sorted(samples.group_by("band").len().rows()) == sorted(expected.rows())
    assert samples["band"].to_list()[0] == bands["band"][0]


def test_lengths_and_agreement(audit, all_traces):
    lengths = audit.lengths()
    direct = all_traces.group_by("teacher").agg(pl.col("reasoning_tokens").cast(pl.Float64).max()).sort("teacher")
    assert lengths["max"].to_list() == direct["reasoning_tokens"].to_list()
    solved = (all_traces.group_by("problem_id", "teacher").agg(solved=pl.col("correct").mean() >= 0.5)
              .pivot("teacher", index="problem_id", values="solved"))
    expected = (solved["qwen25-14b"] == solved["sky-t1"]).mean()
    agreement = audit.agreement()
    pair = agreement.filter((pl.col("teacher_a") == "qwen25-14b") & (pl.col("teacher_b") == "sky-t1"))
    assert pair["agreement"].item() == pytest.approx(expected, abs=1e-4)
    assert agreement.filter(pl.col("teacher_a") == pl.col("teacher_b"))["agreement"].to_list() == [1.0, 1.0]


def test_clusters_and_contamination_from_reject_detail(tmp_path):
    run_dir = copy_run(tmp_path)
    rejections = pl.read_parquet(run_dir / "rejections.parquet")
    output = pl.read_parquet(run_dir / "output.parquet")
    kept_id = output["problem_id"][0]
    duplicate = pl.col("step") == "dedup"
    contaminated = pl.col("step") == "decontaminate"
    rejections = rejections.with_columns(
        reject_detail=pl.when(duplicate).then(pl.lit(json.dumps(
            {"duplicate_of": kept_id, "similarity": 0.9312, "cluster_size": 2})))
        .when(contaminated).then(pl.lit(json.dumps(
            {"method": "ngram", "score": 0.82, "eval_set": "amc23", "eval_id": "amc23/7",
             "eval_problem": "Evaluate (1+2i)6-3i.", "methods": ["ngram"]})))
        .otherwise(pl.col("reject_detail")),
        reject_reason=pl.when(contaminated).then(pl.lit("contaminated")).otherwise(pl.col("reject_reason")),
    )
    rejections.write_parquet(run_dir / "rejections.parquet")
    audit = Audit.open(run_dir)

    clusters = audit.clusters()
    members = rejections.filter(duplicate)["problem_id"].unique().to_list()
    assert clusters.height == 1
    assert clusters["kept_id"].item() == kept_id
    assert clusters["kept_problem"].item() == output["problem"][0]
    assert sorted(clusters["members"].item().to_list()) == sorted(members)
    assert clusters["similarities"].item().to_list() == [0.9312] * len(members)
    assert clusters["size"].item() == len(members) + 1

    hits = audit.contamination()
    direct = rejections.filter(contaminated).group_by("problem_id").len()
    assert hits.select("problem_id", "traces").rows() == direct.rows()
    assert hits.select("method", "score", "eval_set", "eval_id").row(0) == ("ngram", 0.82, "amc23", "amc23/7")


def test_pruning_tokens_saved(tmp_path):
    run_dir = copy_run(tmp_path)
    output = pl.read_parquet(run_dir / "output.parquet")
    # prune_steps cut Sky-T1's reasoning; rewrite_traces (text: answer_text) shortened the
    # answers of Qwen's first 5 traces and of every Sky-T1 trace.
    rewritten = (pl.col("teacher") == "sky-t1") | (pl.int_range(pl.len()).over("teacher") < 5)
    pruned = output.with_columns(
        reasoning_tokens_before=pl.when(pl.col("teacher") == "sky-t1").then(pl.col("reasoning_tokens") + 100),
        answer_tokens_before=pl.when(rewritten).then(pl.col("answer_tokens") + 7),
        pruned_by=pl.when(pl.col("teacher") == "sky-t1").then(pl.lit("prune_steps")),
    )
    pruned.write_parquet(run_dir / "output.parquet")
    pruning = Audit.open(run_dir).pruning()
    sky_t1 = output.filter(pl.col("teacher") == "sky-t1").height
    assert dict(pruning.select("teacher", "tokens_saved").iter_rows()) == {"qwen25-14b": 5 * 7,
                                                                          "sky-t1": 107 * sky_t1}
    assert dict(pruning.select("teacher", "pruned").iter_rows()) == {"qwen25-14b": 5, "sky-t1": sky_t1}
    report = render_report(Audit.open(run_dir), tmp_path / "report.html").read_text()
    assert 'alt="tokens saved by pruning"' in report


def test_missing_columns_give_empty_tables_and_notes(tmp_path):
    run_dir = copy_run(tmp_path)
    pl.read_parquet(run_dir / "output.parquet").drop("band", "teacher", "correct").write_parquet(
        run_dir / "output.parquet")
    (run_dir / "rejections.parquet").unlink()
    audit = Audit.open(run_dir)
    for table in (audit.teachers(), audit.bands(), audit.samples(), audit.clusters(), audit.contamination(),
                  audit.pruning(), audit.agreement(), audit.lengths()):
        assert table.height == 0
    assert any("'band'" in note for note in audit.notes)
    assert any("'teacher'" in note for note in audit.notes)
    html = render_report(audit, tmp_path / "report.html").read_text()
    assert "Missing data" in html


def test_opens_a_published_version(tmp_path, audit):
    folder = tmp_path / "dataset" / "v1"
    (folder / "data").mkdir(parents=True)
    output = pl.read_parquet(RUN / "output.parquet")
    output.write_parquet(folder / "data" / "train-00000-of-00001.parquet")
    lineage = {"version": "v1", "created_at": "2025-06-01T10:05:00Z",
               "files": [{"path": "data/train-00000-of-00001.parquet"}],
               "recipe": audit.manifest["recipe"], "steps": audit.manifest["steps"]}
    (folder / "lineage.json").write_text(json.dumps(lineage))
    for path in (folder, folder.parent):  # a version folder, or its dataset folder (latest version)
        published = Audit.open(path)
        assert published.kind == "published"
        assert published.funnel().equals(audit.funnel())
        assert published.teachers()["traces"].sum() == output.height
        assert published.bands().equals(audit.bands())
    with pytest.raises(AuditError, match="not a run directory"):
        Audit.open(tmp_path)


def test_report_is_self_contained_with_valid_pngs(tmp_path):
    from PIL import Image

    out = audit_command(RUN, tmp_path / "report.html")
    page = out.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page, re.I)
    assert "<script" not in page and "<link" not in page
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) >= 4  # funnel, lengths, agreement, pass rate
    for tag in images:
        match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert match, tag[:80]
        data = base64.b64decode(match.group(1), validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    assert page.count("<details>") == Audit.open(RUN).samples().height  # reasoning is collapsible
    for table in ("Funnel", "Teachers", "Difficulty", "Dedup clusters", "Decontamination hits", "Examples per band"):
        assert f"<h2>{table}</h2>" in page


QUICKSTART = Path(__file__).parent.parent / "runs" / "quickstart"


@pytest.mark.parametrize("run_dir", [RUN, QUICKSTART], ids=["math500-fixture", "quickstart"])
def test_any_run_matches_direct_polars(run_dir):
    """The same checks on the quickstart output when `curate run` has produced it (CI runs
    the quickstart first); skipped otherwise, since runs/ is not checked in."""
    if not (run_dir / "run.json").is_file():
        pytest.skip(f"{run_dir} has not been produced (run the quickstart first)")
    manifest = json.loads((run_dir / "run.json").read_text())
    output = pl.read_parquet(run_dir / manifest["output"])
    rejections_path = run_dir / manifest.get("rejections", "rejections.parquet")
    rejections = pl.read_parquet(rejections_path) if rejections_path.is_file() else pl.DataFrame()
    audit = Audit.open(run_dir)
    assert audit.funnel()["rows_out"].to_list() == [s["rows_out"] for s in manifest["steps"]]
    reasons = audit.rejection_reasons()
    assert reasons["rows"].to_list() == reasons["in_table"].to_list()
    traces = output
    if "trace_id" in rejections.columns:
        traces = pl.concat([output, rejections.filter(pl.col("trace_id").is_not_null())], how="diagonal_relaxed")
    direct = traces.group_by("teacher").agg(n=pl.len(), accuracy=pl.col("correct").cast(pl.Float64).mean())
    teachers = audit.teachers().join(direct, on="teacher")
    assert teachers.height == direct.height
    assert (teachers["traces"] == teachers["n"]).all()
    assert teachers["accuracy"].to_list() == pytest.approx(teachers["accuracy_right"].to_list(), abs=1e-4)
    bands = output.group_by(pl.col("band").fill_null("ungraded")).len()
    assert sorted(audit.bands().select("band", "traces").rows()) == sorted(bands.rows())
