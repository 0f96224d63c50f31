"""Competitive-programming tests: stdin/stdout cases for Python and C++, per-case time
limits, the tolerant checker, the `tests` shapes, and the verify operator on such rows."""

import json
import shutil

import polars as pl
import pytest

from curate.answers import sandbox_box
from curate.answers.check import AssertTests, CodeCases, parse_tests
from curate.answers.sandbox_stdio import Case, CaseLimits, run_cases, tokens_match
from curate.core.operator import StepContext
from curate.verify.operators import Verify

needs_bwrap = pytest.mark.skipif(sandbox_box._probe() is not None,
                                 reason=f"bubblewrap cannot run here: {sandbox_box._probe()}")
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed (Debian package g++)")

# sum of a list of numbers, printed with 6 decimals: the expected outputs have other spacing and precision
CASES = [Case("3\n1 2 3\n", "6"), Case("2\n0.1 0.2\n", "0.3000000001\n"), Case("1\n-5\n", "  -5.0  ")]
PYTHON_SUM = "n = int(input())\nprint(f'{sum(map(float, input().split())):.6f}')\n"
CPP_SUM = """#include <cstdio>
int main() { int n; double s = 0, x; scanf("%d", &n); for (int i = 0; i < n; i++) { scanf("%lf", &x); s += x; }
printf("%.6f\\n", s); }
"""


@pytest.mark.parametrize(("expected", "got", "match"), [
    ("1 2\n3", "1\n2 3\n\n", True),  # white space is not compared
    ("0.3", "0.30000001", True),  # within 1e-6
    ("0.3", "0.3001", False),
    ("1e9", "1000000000.5", True),  # relative
    ("100000000000000000000", "100000000000000000001", False),  # integers compare exactly
    ("1000000", "1000000.5", False), ("100000000000000000001", "1e20", False),  # no tolerance for an integer
    ("6", "6.000000", True), ("100000000000000000000", "1e20", True),  # only exactly its value
    ("1000000.0", "1000000.5", True),  # a real number: within the relative tolerance
    ("YES", "yes", False),
    ("1 2", "1 2 3", False),
    ("nan", "nan", True), ("nan", "0", False), ("inf", "1e308", False),
])
def test_tolerant_checker(expected, got, match):
    assert tokens_match(expected, got, 1e-6) is match


@pytest.mark.parametrize("tag", ["cpp", "c++", "C++", "CPP", "cc", "cxx", ""])
def test_a_cpp_block_is_found_under_each_alias(tag):
    from curate.answers.extract import extract_code

    text = f"Reasoning.\n```python\nprint(1)\n```\nFinal:\n```{tag}\n{CPP_SUM}```\n"
    assert extract_code(text, "cpp") == (CPP_SUM, "code_block")
    assert extract_code(text.replace("python", tag.upper() or "text"), "c++")[0] == CPP_SUM


@pytest.mark.parametrize("tag", ["python", "py", "Python3", "PY"])
def test_a_python_block_is_found_under_each_alias(tag):
    from curate.answers.extract import extract_code

    assert extract_code(f"```{tag}\nprint(1)\n```\n```cpp\nint main() {{}}\n```\n") == ("print(1)\n", "code_block")


def test_tests_shapes():
    asserts = parse_tests(json.dumps({"test": "assert f() == 1", "entry_point": "f"}))
    assert asserts == AssertTests("assert f() == 1", "f")
    cases = parse_tests(json.dumps({"cases": [{"input": "1\n", "output": "2\n"}], "time_limit_s": 1.5}))
    assert cases == CodeCases([Case("1\n", "2\n")], 1.5)
    apps = parse_tests(json.dumps({"inputs": ["1\n", "2\n"], "outputs": ["2\n", "4\n"]}))
    assert isinstance(apps, CodeCases) and apps.cases[1] == Case("2\n", "4\n") and apps.time_limit_s is None
    for bad in ({"cases": []}, {"cases": [{"input": 1, "output": "2"}]}, {"nothing": 1},
                {"inputs": ["1"], "outputs": []}, {"inputs": [[1]], "outputs": ["2"]},
                {"cases": [{"input": "", "output": ""}], "time_limit_s": -1}):
        assert isinstance(parse_tests(json.dumps(bad)), str)
    assert parse_tests("[1]") == "tests must be a JSON object"


@needs_bwrap
def test_python_program_on_cases():
    assert run_cases(PYTHON_SUM, "python", CASES).status == "correct"
    wrong = run_cases(PYTHON_SUM.replace("sum(map(float, input().split()))", "abs(sum(map(float, input().split())))"),
                      "python", CASES)
    assert wrong.status == "wrong" and wrong.tests[-1] == {
        "name": "case_2", "status": "fail", "message": "output differs from the expected output"}
    crash = run_cases("raise SystemExit(3)", "python", CASES)
    assert crash.status == "wrong" and crash.tests[0]["message"] == "exit status 3"


@needs_bwrap
def test_per_case_time_limit_is_cpu_time():
    slow = ("import time\nn = int(input())\nif n == 2:\n    while time.process_time() < 2.5:\n        pass\n"
            + PYTHON_SUM.split("\n", 1)[1])
    result = run_cases(slow, "python", CASES, CaseLimits(time_limit_s=1.0, backstop_factor=30))
    assert result.status == "timeout" and [t["status"] for t in result.tests] == ["pass", "timeout"]
    assert result.message == "over 1 CPU seconds"
    assert run_cases(slow, "python", CASES, CaseLimits(time_limit_s=10.0)).status == "correct"  # the control


@needs_bwrap
def test_a_slow_machine_does_not_make_a_correct_case_timeout():
    """A stalled machine, simulated by a program that waits 3.5 s of wall clock with no CPU: over
    the 1 s CPU limit's old wall clock (3 s), within its backstop (8 s)."""
    waits = "import time\ntime.sleep(3.5)\n" + PYTHON_SUM
    assert run_cases(waits, "python", CASES[:1], CaseLimits(time_limit_s=1.0)).status == "correct"


@needs_bwrap
def test_a_program_that_waits_is_stopped_by_the_wall_clock_and_undecided():
    """Waiting and a starved machine cannot be told apart: undecided, never a timeout verdict."""
    result = run_cases("import time\ntime.sleep(60)", "python", CASES, CaseLimits(time_limit_s=1.0, backstop_factor=1))
    assert result.status == "error" and result.message == "over 2.0s of wall clock", result


@needs_bwrap
def test_output_over_the_cap_is_wrong_with_a_reason():
    flood = "import sys\nwhile True:\n    sys.stdout.write('1 ' * 65536)\n"
    result = run_cases(flood, "python", CASES, CaseLimits(output_bytes=1 << 20, time_limit_s=30))
    assert result.status == "wrong" and result.message == f"output over {1 << 20} bytes"


@needs_bwrap
def test_cases_run_in_the_box(tmp_path):
    """A program that reads the machine's files or the network fails: the box holds neither."""
    probe = "import socket\nopen('/etc/passwd').read()\n" + PYTHON_SUM
    assert run_cases(probe, "python", CASES).status == "wrong"
    assert run_cases(probe, "python", CASES, isolation=sandbox_box.Isolation.UNSAFE).status == "correct"


@needs_bwrap
@needs_gpp
def test_cpp_program_on_cases():
    assert run_cases(CPP_SUM, "cpp", CASES).status == "correct"
    wrong = run_cases(CPP_SUM.replace("s += x", "s -= x"), "cpp", CASES)
    assert wrong.status == "wrong" and wrong.tests[0]["status"] == "fail"
    broken = run_cases("int main() { return }", "cpp", CASES)
    assert broken.status == "wrong" and broken.message.startswith("does not compile")
    spin = CPP_SUM.replace("int main() {", "int main() { for (volatile long i = 0;; i++); ")
    assert run_cases(spin, "cpp", CASES, CaseLimits(time_limit_s=1.0, backstop_factor=30)).status == "timeout"


@needs_bwrap
@needs_gpp
def test_verify_operator_on_stdin_stdout_rows(tmp_path):
    tests = json.dumps({"cases": [{"input": c.input, "output": c.output} for c in CASES], "time_limit_s": 5})
    frame = pl.DataFrame({
        "domain": ["code"] * 4, "problem": ["sum"] * 4, "reference_answer": pl.Series([None] * 4, dtype=pl.String),
        "tests": [tests] * 4,
        "answer_text": [f"```cpp\n{CPP_SUM}```", f"```cpp\n{CPP_SUM.replace('s += x', 's = x')}```", "```cpp\nx\n```",
                        f"Plan.\n```C++\n{CPP_SUM}```\nDone."],
        "completion": [""] * 4,
    })
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    verified = Verify(Verify.Config(code_language="cpp")).apply(frame, ctx)
    assert verified["verify_status"].to_list() == ["correct", "wrong", "wrong", "correct"]
    assert json.loads(verified["verify_detail"][2])["message"].startswith("does not compile")


@pytest.mark.parametrize("stored", ["json text (APPS)", "object", "list of cases"])
def test_a_code_source_reads_stdin_stdout_cases(tmp_path, stored):
    """`fields.tests_format: cases` takes stdin/stdout cases from a source as they are
    stored (a JSON text such as APPS' input_output, an object, or a list of cases), and
    verify judges the source's rows by them."""
    from curate.sources.config import Source
    from curate.sources.problems import load_problems

    inputs, outputs = [c.input for c in CASES], [c.output for c in CASES]
    tests = {"json text (APPS)": json.dumps({"inputs": inputs, "outputs": outputs}),
             "object": {"cases": [{"input": i, "output": o} for i, o in zip(inputs, outputs, strict=True)]},
             "list of cases": [{"input": i, "output": o} for i, o in zip(inputs, outputs, strict=True)]}[stored]
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps({"question": "Print the sum.", "input_output": tests}) + "\n")
    source = Source.model_validate({"name": "cp", "path": str(path), "domain": "code",
                                    "fields": {"problem": "question", "answer": None, "tests": "input_output",
                                               "tests_format": "cases"}})
    problems = load_problems(source, tmp_path)
    parsed = parse_tests(problems["tests"][0])
    assert isinstance(parsed, CodeCases) and parsed.cases == CASES
    if stored == "object" and sandbox_box._probe() is None:
        rows = pl.concat([problems] * 2).with_columns(
            answer_text=pl.Series([f"```python\n{PYTHON_SUM}```", "```python\nprint(0)\n```"]), completion=pl.lit(""))
        ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
        assert Verify(Verify.Config()).apply(rows, ctx)["verify_status"].to_list() == ["correct", "wrong"]
