"""Hostile input: every bad input ends in one line `error <where>: <what> - <what to do>`, exit
code 2 (bad input), and nothing written. One parametrised case per kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from curate.cli import app

PROBLEMS = '{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": "4"}\n'
STEPS = "steps:\n  - op: sample\n    n: 1\n"
HEAD = "name: t\nsources:\n  - name: toy\n    path: p.jsonl\n"
RECIPE = HEAD + STEPS + "output:\n  dir: run\n"


def teacher(model: str, backend: str = "transformers", options: str = "{}") -> str:
    return (HEAD + "steps:\n  - op: generate\n    teachers:\n      - name: t1\n"
            f"        backend: {backend}\n        model: {model}\n        options: {options}\n"
            "        prompt: {user: '{problem}'}\noutput:\n  dir: run\n")


def bomb(levels: int = 12) -> str:
    """A 'billion laughs': 9 ** levels strings from a few hundred bytes."""
    lines = ['        l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"        l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


BOMB_RECIPE = (HEAD + "steps:\n  - op: generate\n    teachers:\n      - name: t1\n        backend: openai\n"
               "        model: m\n        prompt: {user: '{problem}'}\n        options:\n          extra_body:\n"
               + "\n".join("  " + line for line in bomb().splitlines()) + "\n")


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    expect: list[str]  # fragments of the error line
    files: dict[str, str | bytes] = field(default_factory=dict)
    recipe: str | None = RECIPE
    finished_run: bool = False  # copy a finished run to ./done first
    lines: int | None = 1  # error lines expected (None: any number >= 1)


def src(name: str, content: str | bytes, fields: str = "", extra: str = "") -> dict:
    recipe = (f"name: t\nsources:\n  - name: toy\n    path: {name}\n{fields}{extra}" + STEPS + "output:\n  dir: run\n")
    return {"recipe": recipe, "files": {name: content}}


CASES = [
    # --- the recipe file itself ---
    Case("alias-bomb-in-extra_body", ["validate", "r.yaml"], 2, ["r.yaml:", "aliases"], recipe=BOMB_RECIPE),
    Case("alias-recursive", ["validate", "r.yaml"], 2, ["r.yaml:", "refers to itself"],
         recipe=RECIPE + "description: &d [*d]\n"),
    Case("duplicate-top-level-key", ["validate", "r.yaml"], 2, ["r.yaml:10:", "duplicate key 'steps'", "line 5"],
         recipe=RECIPE + "steps: []\n"),
    Case("duplicate-key-in-step", ["validate", "r.yaml"], 2, ["r.yaml:8:", "duplicate key 'n'"],
         recipe=HEAD + STEPS + "    n: 2\n"),
    Case("recipe-nested-20000-deep", ["validate", "r.yaml"], 2, ["r.yaml:10:", "more than 100 levels deep"],
         recipe=RECIPE + "description: " + "[" * 20000 + "]" * 20000 + "\n"),
    Case("recipe-nested-block-style", ["validate", "r.yaml"], 2, ["r.yaml:", "more than 100 levels deep"],
         recipe=RECIPE + "description:\n" + "".join("  " * i + "- \n" for i in range(1, 700))),
    Case("set-nested-20000-deep", ["validate", "r.yaml", "--set", "sample.seed=" + "{a: " * 20000 + "}" * 20000], 2,
         ["--set", "more than 100 levels deep"]),
    Case("oversized-recipe", ["validate", "r.yaml"], 2, ["r.yaml", "bytes; the limit is"],
         recipe=RECIPE + "#" * (1 << 20) + "\n"),
    Case("recipe-not-utf8", ["validate", "r.yaml"], 2, ["r.yaml", "cannot read recipe"],
         recipe=None, files={"r.yaml": b"name: \xff\xfe\n"}),
    Case("recipe-missing", ["validate", "nope.yaml"], 2, ["nope.yaml", "No such file"], recipe=None),
    Case("recipe-is-a-directory", ["validate", "d"], 2, ["d:", "cannot read recipe"], recipe=None,
         files={"d/x": ""}),
    Case("invalid-yaml", ["validate", "r.yaml"], 2, ["r.yaml:", "invalid YAML"], recipe="name: t\nsources: [\n"),
    Case("python-tag", ["validate", "r.yaml"], 2, ["r.yaml:", "invalid YAML"],
         recipe=HEAD + "steps:\n  - !!python/object/apply:os.system ['echo pwned']\n"),
    Case("two-documents", ["validate", "r.yaml"], 2, ["r.yaml:", "single document"], recipe=RECIPE + "---\nname: u\n"),
    Case("recipe-is-a-list", ["validate", "r.yaml"], 2, ["r.yaml:1:", "a recipe is a mapping"], recipe="- a\n- b\n"),
    Case("recipe-empty", ["validate", "r.yaml"], 2, ["r.yaml:1:", "a recipe is a mapping"], recipe=""),
    Case("unknown-operator", ["validate", "r.yaml"], 2, ["r.yaml:6:", "unknown operator 'nope'"],
         recipe=HEAD + "steps:\n  - op: nope\n"),
    Case("field-wrong-type", ["validate", "r.yaml"], 2, ["r.yaml:7:", "steps[0].n", "integer"],
         recipe=HEAD + "steps:\n  - op: sample\n    n: many\n"),
    Case("unknown-step-field", ["validate", "r.yaml"], 2, ["r.yaml:8:", "steps[0].sed"],
         recipe=HEAD + STEPS + "    sed: 1\n"),
    Case("step-without-op", ["validate", "r.yaml"], 2, ["r.yaml:6:", "needs `op"], recipe=HEAD + "steps:\n  - n: 1\n"),
    Case("missing-name", ["validate", "r.yaml"], 2, ["r.yaml", "name", "required"],
         recipe="sources:\n  - name: toy\n    path: p.jsonl\n"),
    Case("no-sources", ["validate", "r.yaml"], 2, ["r.yaml:2:", "sources"], recipe="name: t\nsources: []\n"),
    Case("source-path-and-hub", ["validate", "r.yaml"], 2, ["r.yaml:3:", "exactly one of path or hub"],
         recipe="name: t\nsources:\n  - name: toy\n    path: p.jsonl\n    hub: a/b\n"),
    Case("duplicate-step-id", ["validate", "r.yaml"], 2, ["r.yaml:", "duplicate step id 's'"],
         recipe=HEAD + "steps:\n  - op: sample\n    id: s\n    n: 1\n  - op: sample\n    id: s\n    n: 1\n"),
    Case("column-not-produced", ["validate", "r.yaml"], 2, ["r.yaml:6:", "step 'grade' needs column(s)"],
         recipe=HEAD + "steps:\n  - op: grade\n"),
    Case("publish-without-traces", ["validate", "r.yaml"], 2, ["r.yaml:10:", "publish", "no traces"],
         recipe=RECIPE + "publish: {output_dir: pub}\n"),
    Case("greedy-with-n-samples", ["validate", "r.yaml"], 2, ["r.yaml:", "sampling.n must be 1"],
         recipe=teacher("bundled:smollm2").replace("prompt:", "sampling: {temperature: 0, n: 4}\n        prompt:")),
    Case("teacher-field-typo", ["validate", "r.yaml"], 2, ["r.yaml:8:", "teachers[0].model: Field required"], lines=2,
         recipe=teacher("bundled:smollm2").replace("model:", "modle:")),
    # --- names that become paths ---
    Case("recipe-name-escapes-runs", ["run", "r.yaml"], 2, ["r.yaml:1:", "name: '../../escaped' is not a safe name"],
         recipe=HEAD.replace("name: t", "name: ../../escaped", 1) + STEPS),
    Case("recipe-name-with-newline", ["validate", "r.yaml"], 2, ["r.yaml:1:", "name: 'a\\nb' is not a safe name"],
         recipe=RECIPE.replace("name: t", 'name: "a\\nb"', 1)),
    Case("step-id-escapes", ["validate", "r.yaml"], 2, ["r.yaml:7:", "steps[0].id: '../x' is not a safe name"],
         recipe=HEAD + "steps:\n  - op: sample\n    id: ../x\n    n: 1\n"),
    Case("recipe-output-dir-empty", ["run", "r.yaml"], 2, ["r.yaml:9:", "output.dir is empty"],
         recipe=RECIPE.replace("dir: run", "dir: ''")),
    Case("run-o-empty", ["run", "r.yaml", "-o", ""], 2, ["--output/-o: is empty"]),
    Case("publish-to-empty", ["publish", "done", "--to", ""], 2, ["--to: is empty"], finished_run=True),
    Case("publish-output-dir-empty", ["publish", "done", "--set", "output_dir=''"], 2, ["output_dir is empty"],
         finished_run=True),
    Case("hub-is-a-local-folder", ["validate", "r.yaml"], 2,
         ["r.yaml:4:", "sources[0].hub: '../folder' is not a Hub dataset id (owner/name)"],
         recipe="name: t\nsources:\n  - name: toy\n    hub: ../folder\n" + STEPS),
    Case("hub-is-a-bare-name", ["validate", "r.yaml"], 2, ["sources[0].hub: 'folder' is not a Hub dataset id"],
         recipe="name: t\nsources:\n  - name: toy\n    hub: folder\n" + STEPS, files={"folder/x.jsonl": PROBLEMS}),
    # --- --set ---
    Case("set-unknown-step", ["validate", "r.yaml", "--set", "nosuchstep.n=3"], 2,
         ["r.yaml (--set 'nosuchstep.n=3')", "no step 'nosuchstep'", "steps: sample"]),
    Case("set-unclosed-list", ["validate", "r.yaml", "--set", "sample.n=[1,"], 2, ["sample.n=[1,", "not usable YAML"]),
    Case("set-without-equals", ["validate", "r.yaml", "--set", "sample.n"], 2, ["'sample.n'", "expected STEP.FIELD"]),
    Case("set-bad-value", ["validate", "r.yaml", "--set", "sample.n=lots"], 2,
         ["r.yaml (--set 'sample.n=lots'): steps[0].n", "fix the --set value"]),
    Case("set-alias-bomb", ["validate", "r.yaml", "--set", "sample.seed=" + "{a: &a [x,x,x,x,x,x,x,x,x,x], b: &b ["
                            + ",".join(["*a"] * 10) + "], c: &c [" + ",".join(["*b"] * 10) + "], d: &d ["
                            + ",".join(["*c"] * 10) + "], e: &e [" + ",".join(["*d"] * 10) + "], f: &f ["
                            + ",".join(["*e"] * 10) + "], g: [" + ",".join(["*f"] * 10) + "]}"],
         2, ["--set", "aliases"]),
    Case("set-unknown-top-level", ["validate", "r.yaml", "--set", "nme=x"], 2,
         ["--set 'nme=x'", "expected STEP.FIELD"]),
    Case("set-into-a-scalar", ["validate", "r.yaml", "--set", "name.x=1"], 2, ["name is not a mapping"]),
    # --- models, paths: what validate knows without running ---
    Case("bundled-model-unknown", ["validate", "r.yaml"], 2, ["r.yaml:6:", "'bundled:nope' is not a bundled model",
                                                                "bundled:smollm2"], recipe=teacher("bundled:nope")),
    Case("model-path-missing", ["validate", "r.yaml"], 2, ["r.yaml:6:", "model path ./nope.gguf does not exist"],
         recipe=teacher("./nope.gguf")),
    Case("hub-model-offline", ["validate", "r.yaml"], 2, ["r.yaml:6:", "'nobody/no-such-model'", "the Hub is off"],
         recipe=teacher("nobody/no-such-model")),
    Case("openai-server-down", ["validate", "r.yaml"], 2, ["r.yaml:6:", "http://127.0.0.1:9/v1 does not answer"],
         recipe=teacher("m", "openai", "{base_url: 'http://127.0.0.1:9/v1'}")),
    Case("source-file-missing", ["validate", "r.yaml"], 2, ["r.yaml:4:", "sources[0] (toy)", "does not exist"],
         recipe=HEAD.replace("p.jsonl", "gone.jsonl") + STEPS),
    Case("output-dir-is-a-file", ["validate", "r.yaml"], 2, ["r.yaml:", "output.dir: run is a file"],
         files={"run": "x"}),
    Case("run-output-dir-is-a-file", ["run", "r.yaml"], 2, ["output.dir: run is a file"], files={"run": "x"}),
    Case("run-output-under-a-file", ["run", "r.yaml", "-o", "f/run"], 2, ["output.dir: f (in f/run) is a file"],
         files={"f": "x"}),
    Case("cache-dir-is-a-file", ["run", "r.yaml"], 2, ["r.yaml:", "cache_dir: c is a file"],
         recipe=RECIPE + "cache_dir: c\n", files={"c": "x"}),
    # --- source data (found by `curate run`) ---
    Case("jsonl-malformed-line", ["run", "r.yaml"], 2, ["bad.jsonl:2: malformed JSON"],
         **src("bad.jsonl", '{"problem": "a", "answer": "1"}\n{oops}\n')),
    Case("jsonl-not-utf8", ["run", "r.yaml"], 2, ["bad.jsonl:2: not valid UTF-8"],
         **src("bad.jsonl", b'{"problem": "a", "answer": "1"}\n{"problem": "\xff"}\n')),
    Case("jsonl-blank-lines-only", ["run", "r.yaml"], 2, ["bad.jsonl: no records, only blank lines"],
         **src("bad.jsonl", "\n\n   \n\n")),
    Case("jsonl-empty-file", ["run", "r.yaml"], 2, ["bad.jsonl: file is empty"], **src("bad.jsonl", "")),
    Case("jsonl-not-an-object", ["run", "r.yaml"], 2, ["bad.jsonl:1: expected a JSON object"],
         **src("bad.jsonl", "[1, 2]\n")),
    Case("jsonl-nulls-then-int", ["run", "r.yaml"], 2, ["record 4", "'problem'", "must be text"],
         **src("bad.jsonl", '{"problem": null}\n' * 3 + '{"problem": 7}\n')),
    Case("jsonl-null-problem", ["run", "r.yaml"], 2, ["record 2", "'problem'", "null"],
         **src("bad.jsonl", '{"problem": "a"}\n{"answer": "1"}\n')),
    Case("json-field-changes-type", ["run", "r.yaml"], 2,
         ["bad.json: record 2: field 'problem' is an object, but text in record 1"],
         **src("bad.json", '[{"problem": "a"}, {"problem": {"x": 1}}]')),
    Case("jsonl-missing-field", ["run", "r.yaml"], 2, ["bad.jsonl", "'question'", "missing"],
         **src("bad.jsonl", PROBLEMS, fields="    fields: {problem: question}\n")),
    Case("gsm8k-answer-without-marker", ["run", "r.yaml"], 2, ["record 1", "'answer'", "'####'"],
         **src("bad.jsonl", PROBLEMS, extra="    answer_format: gsm8k\n")),
    Case("csv-short-row", ["run", "r.yaml"], 2, ["bad.csv:3: row has 1 fields, the header has 2"],
         **src("bad.csv", "problem,answer\n1+1?,2\n2+2?\n")),
    Case("csv-long-row", ["run", "r.yaml"], 2, ["bad.csv:2: row has 3 fields"],
         **src("bad.csv", "problem,answer\n1+1?,2,x\n")),
    Case("csv-not-utf8", ["run", "r.yaml"], 2, ["bad.csv", "UTF-8"], **src("bad.csv", b"problem,answer\n\xff,1\n")),
    Case("json-not-a-list", ["run", "r.yaml"], 2, ["bad.json", "expected a JSON list"], **src("bad.json", '{"a": 1}')),
    Case("json-record-not-object", ["run", "r.yaml"], 2, ["bad.json: record 2: expected a JSON object"],
         **src("bad.json", '[{"problem": "a"}, 3]')),
    Case("json-malformed", ["run", "r.yaml"], 2, ["bad.json:2: malformed JSON"], **src("bad.json", '[\n{oops}]')),
    Case("parquet-corrupt", ["run", "r.yaml"], 2, ["bad.parquet: not a readable parquet file"],
         **src("bad.parquet", b"PAR1 not really")),
    Case("unknown-suffix", ["run", "r.yaml"], 2, ["bad.txt: cannot tell the format"], **src("bad.txt", "x")),
    # --- run directories and datasets ---
    Case("publish-not-a-run", ["publish", "."], 2, ["run.json is missing"]),
    Case("publish-corrupt-output", ["publish", "done"], 2, ["output.parquet: not a readable parquet file"],
         finished_run=True),
    Case("publish-set-unknown-field", ["publish", "done", "--set", "licence=mit"], 2,
         ["publish.licence: unknown field", "license"], finished_run=True),
    Case("publish-set-bad-value", ["publish", "done", "--set", "messages=maybe"], 2, ["publish.messages"],
         finished_run=True),
    Case("run-json-malformed", ["publish", "d"], 2, ["run.json: not valid JSON"], files={"d/run.json": "{oops"}),
    Case("run-json-not-a-manifest", ["audit", "d"], 2, ["run.json: steps[0] lacks"],
         files={"d/run.json": '{"steps": [{}]}'}),
    Case("versions-missing-folder", ["versions", "nowhere"], 2, ["nowhere: no such folder"]),
    Case("versions-on-a-file", ["versions", "f"], 2, ["f: not a folder"], files={"f": "x"}),
    Case("audit-not-a-run", ["audit", "."], 2, ["not a run directory"]),
    Case("audit-run-that-did-nothing", ["audit", "d", "--out", "d/r.html"], 2, ["before any step finished"],
         files={"d/run.json": '{"steps": []}'}),
    Case("diff-unknown-versions", ["diff", ".", "v1", "v2"], 2, ["no version 'v1'", "curate versions"]),
    # --- nothing a command writes may replace the user's data ---
    Case("audit-out-is-the-run-output", ["audit", "done", "--out", "done/output.parquet"], 2,
         ["done/output.parquet:", "does not end in .html"], finished_run=True),
    Case("audit-out-is-a-source", ["audit", "done", "--out", "p.jsonl"], 2, ["p.jsonl:", ".html"], finished_run=True),
    Case("audit-out-is-someone-elses-html", ["audit", "done", "--out", "notes.html"], 2,
         ["notes.html:", "not an audit report written by curate"], finished_run=True,
         files={"notes.html": "<!DOCTYPE html><html>my notes</html>"}),
    Case("audit-out-is-a-folder", ["audit", "done", "--out", "d.html"], 2, ["d.html:", "not a file"],
         finished_run=True, files={"d.html/x": "x"}),
    Case("recipe-is-dev-zero", ["validate", "/dev/zero"], 2,
         ["/dev/zero:", "cannot read recipe", "a character device, not a regular file"], recipe=None),
    Case("source-is-dev-zero", ["run", "r.yaml"], 2,
         ["r.yaml:4:", "sources[0] (toy): /dev/zero is a character device"], recipe=HEAD.replace("p.jsonl", "/dev/zero")
         + STEPS + "output:\n  dir: run\n"),
    Case("run-source-inside-output-dir", ["run", "r.yaml"], 2,
         ["r.yaml:4:", "sources[0] (toy): run/old.jsonl is inside the output directory run", "overwrite"],
         **src("run/old.jsonl", PROBLEMS)),
    Case("run-output-dir-is-the-recipe-folder", ["run", "r.yaml", "-o", "."], 2,
         ["sources[0] (toy)", "p.jsonl is inside the output directory ."]),
    Case("validate-source-inside-output-dir", ["validate", "r.yaml"], 2, ["run/old.jsonl is inside the output"],
         **src("run/old.jsonl", PROBLEMS)),
    Case("run-into-someone-elses-folder", ["run", "r.yaml", "-o", "mine"], 2,
         ["output directory mine is not empty and is not a curate run directory", "rejections.parquet"],
         files={"mine/rejections.parquet": "the user's own"}),
]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root`, with each file's bytes: nothing added, removed or overwritten."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    (root / "p.jsonl").write_text(PROBLEMS)
    (root / "r.yaml").write_text(RECIPE.replace("dir: run", f"dir: {root / 'run'}"))
    code, err = _invoke(["run", str(root / "r.yaml")], root)
    assert code == 0, err
    return root / "run"


def _invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    """The CLI in this process (subprocesses would cost seconds per case); stderr captured."""
    import io

    from curate import cli

    previous, stream = os.getcwd(), io.StringIO()
    os.chdir(cwd)
    saved = cli.console.file
    cli.console.file = stream
    try:
        app(args, prog_name="curate")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        cli.console.file = saved
        os.chdir(previous)
    return code, stream.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line_and_writes_nothing(case: Case, tmp_path, request):
    (tmp_path / "p.jsonl").write_text(PROBLEMS)
    if case.recipe is not None:
        (tmp_path / "r.yaml").write_text(case.recipe)
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if case.finished_run:
        shutil.copytree(request.getfixturevalue("finished_run"), tmp_path / "done")
        if case.id == "publish-corrupt-output":
            (tmp_path / "done" / "output.parquet").write_bytes(b"PAR1 truncated")
    before = _snapshot(tmp_path)

    code, err = _invoke(case.args, tmp_path)

    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error ")]
    assert code == case.code, err
    assert "Traceback" not in err
    assert errors and (case.lines is None or len(errors) == case.lines), err
    assert all(" - " in line for line in errors), err  # what is wrong - what to do
    for fragment in case.expect:
        assert fragment in errors[0], (fragment, err)
    assert _snapshot(tmp_path) == before  # nothing written, not even a folder


@pytest.mark.parametrize("fifo", ["recipe", "problem-source", "trace-source", "eval-source"])
def test_a_fifo_is_refused_at_once_and_leaves_no_lock(fifo, tmp_path):
    """A named pipe never ends (or never starts): the command must not wait on it."""
    (tmp_path / "p.jsonl").write_text(PROBLEMS)
    os.mkfifo(tmp_path / "pipe")
    recipes = {
        "recipe": None,
        "problem-source": RECIPE.replace("p.jsonl", "pipe"),
        "trace-source": "name: t\nsources:\n  - name: toy\n    kind: traces\n    path: pipe\n"
                        "    traces: {completion: out, teacher: m}\noutput:\n  dir: run\n",
        "eval-source": RECIPE + "eval:\n  model: {name: m, model: bundled:smollm2, prompt: {user: '{problem}'}}\n"
                       "  sources:\n    - name: held\n      path: pipe\n",
    }
    if recipes[fifo] is not None:
        (tmp_path / "r.yaml").write_text(recipes[fifo])
    recipe = "pipe" if fifo == "recipe" else "r.yaml"

    def hung(signum, frame):
        raise TimeoutError("waited on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    try:
        for command in ("validate", "run"):
            signal.alarm(30)  # a failure, not a hang, if the FIFO is opened
            code, err = _invoke([command, recipe], tmp_path)
            signal.alarm(0)
            errors = [line for line in err.splitlines() if line.startswith("error ")]
            assert code == 2 and len(errors) == 1, err
            assert "a FIFO (named pipe)" in errors[0], errors
            assert not (tmp_path / "run").exists()  # no run.lock, no folder
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_the_recipe_reader_reads_at_most_one_byte_past_the_cap(tmp_path):
    from curate.core.io import read_regular

    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * 5000)
    assert len(read_regular(big, 100)) == 101


def test_run_resumes_in_its_own_directory_and_starts_in_an_empty_one(finished_run, tmp_path):
    (tmp_path / "p.jsonl").write_text(PROBLEMS)
    (tmp_path / "r.yaml").write_text(RECIPE)
    shutil.copytree(finished_run, tmp_path / "earlier")
    (tmp_path / "empty").mkdir()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / ".gitkeep").write_text("")  # hidden files are no one's data the run replaces
    for folder in ("earlier", "empty", "kept"):
        code, err = _invoke(["run", "r.yaml", "-o", folder], tmp_path)
        assert code == 0, err


def test_audit_rewrites_its_own_report(finished_run, tmp_path):
    for _ in range(2):  # the second run replaces the report the first one wrote
        code, err = _invoke(["audit", str(finished_run), "--out", "report.html"], tmp_path)
        assert code == 0, err
    # a report from before reports carried the generator mark is curate's too
    earlier = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Audit: run</title>'
    (tmp_path / "earlier.html").write_text(earlier + "<style></style></head><body></body></html>")
    code, err = _invoke(["audit", str(finished_run), "--out", "earlier.html"], tmp_path)
    assert code == 0, err


def test_corpus_covers_every_class():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


def test_alias_bomb_is_refused_within_one_second_and_200_mb():
    import tracemalloc

    from curate.core.yamlsafe import YamlInputError, load_yaml

    assert len(BOMB_RECIPE) < 1500  # ~9 ** 12 strings once expanded
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(YamlInputError, match="aliases"):
            load_yaml(BOMB_RECIPE)
        seconds = time.perf_counter() - start
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1.0
    assert peak_bytes < 200 * 2**20


def test_shared_aliases_within_bounds_still_load(tmp_path):
    (tmp_path / "p.jsonl").write_text(PROBLEMS)
    (tmp_path / "r.yaml").write_text(HEAD + "steps:\n  - op: sample\n    n: &n 1\n    seed: *n\n")
    code, err = _invoke(["validate", "r.yaml"], tmp_path)
    assert code == 0, err


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "p.jsonl").write_text(PROBLEMS)
    (tmp_path / "r.yaml").write_text(HEAD + "steps:\n  - op: nope\n")
    plain = subprocess.run([sys.executable, "-m", "curate.cli", "validate", "r.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    debug = subprocess.run([sys.executable, "-m", "curate.cli", "--debug", "validate", "r.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1
    assert "Traceback" in debug.stderr and "RecipeError" in debug.stderr


def test_an_unexpected_failure_exits_1_with_one_line(tmp_path, monkeypatch):
    import curate.runner

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(curate.runner, "run_recipe", broken)
    (tmp_path / "p.jsonl").write_text(PROBLEMS)
    (tmp_path / "r.yaml").write_text(RECIPE)
    code, err = _invoke(["run", "r.yaml"], tmp_path)
    assert code == 1
    assert err.strip() == ("error RuntimeError: disk on fire second line - this is a failure, not bad input; rerun "
                           "with `curate --debug ...` for the traceback and report it")


def test_audit_of_an_interrupted_run_shows_what_finished(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    manifest = json.loads((run / "run.json").read_text())
    manifest.update(finished_at=None, output=None, rejections=None)  # as run.json is after each step
    (run / "run.json").write_text(json.dumps(manifest))
    (run / "output.parquet").unlink()
    code, err = _invoke(["audit", "run", "--out", "report.html"], tmp_path)
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert "did not finish" in page and "&#x27;sample&#x27;" in page


def test_python_api_names_the_operator_and_missing_columns():
    from curate.catalogue import registry
    from curate.core.operator import MissingColumnsError, StepContext

    ctx = StepContext("x", Path("unused"), Path("unused"))
    frame = pl.DataFrame({"problem_id": ["a"], "problem": ["p"]})
    for name, missing in (("grade", "correct, teacher"), ("truncation_filter", "completion")):
        operator = registry()[name]
        with pytest.raises(MissingColumnsError, match=f"operator '{name}' needs column.*{missing}.*`generate`"):
            operator(operator.Config()).apply(frame, ctx)


def test_alias_bomb_time_is_linear_in_the_file():
    from curate.core.yamlsafe import YamlInputError, load_yaml

    start = time.perf_counter()
    with pytest.raises(YamlInputError):
        load_yaml(bomb(levels=40))
    assert time.perf_counter() - start < 1.0
