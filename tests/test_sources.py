"""Sources: every supported format reads into the problem table; bad input fails clearly."""

import json
import re
import subprocess
import sys

import polars as pl
import pytest

from curate.schema import PROBLEM_COLUMNS, polars_schema
from curate.sources.config import Source
from curate.sources.problems import load_problems
from curate.sources.readers import SourceError

RECORDS = [
    {"question": "What is 2+3?", "answer": "2+3=5\n#### 5", "level": 1},
    {"question": "What is 10*100?", "answer": "so\n#### 1,000", "level": 2},
]


def gsm8k_source(path, **extra):
    return Source(name="toy", path=str(path), fields={"problem": "question", "answer": "answer"},
                  answer_format="gsm8k", **extra)


def write_all_formats(tmp_path):
    frame = pl.DataFrame(RECORDS)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    (tmp_path / "a.json").write_text(json.dumps(RECORDS))
    frame.write_parquet(tmp_path / "a.parquet")
    frame.write_csv(tmp_path / "a.csv")
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "a_disk"))
    return ["a.jsonl", "a.json", "a.parquet", "a.csv", "a_disk"]


def test_every_format_gives_the_same_problem_table(tmp_path):
    tables = [load_problems(gsm8k_source(tmp_path / name), tmp_path) for name in write_all_formats(tmp_path)]
    first = tables[0]
    assert first.schema == polars_schema("problem")
    assert first["reference_answer"].to_list() == ["5", "1000"]
    assert json.loads(first["metadata"][0]) == {"level": 1}
    for other in tables[1:]:
        assert other.drop("metadata").equals(first.drop("metadata"))


def test_hub_source_goes_through_load_dataset(tmp_path):
    # The Hub is unreachable here; load_dataset on a local folder takes the same code path.
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    source = Source(name="hub", hub=str(folder), fields={"problem": "question", "answer": "answer"},
                    answer_format="gsm8k")
    table = load_problems(source, tmp_path)
    assert table["reference_answer"].to_list() == ["5", "1000"]


def test_problem_ids_are_content_hashes(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"problem": "Find  x.", "answer": "1"}) + "\n"
                    + json.dumps({"problem": "Find x. ", "answer": "1"}) + "\n"
                    + json.dumps({"problem": "Find y.", "answer": "1"}) + "\n")
    ids = load_problems(Source(name="s", path=str(path)), tmp_path)["problem_id"].to_list()
    assert ids[0] == ids[1] != ids[2]


def test_bundled_references_parse_for_every_record():
    from pathlib import Path

    data = Path(__file__).parent.parent / "curate" / "data"
    gsm8k = load_problems(gsm8k_source(data / "gsm8k" / "train_sample.jsonl"), data)
    math = load_problems(Source(name="m", path=str(data / "math500" / "test.jsonl"),
                                fields={"problem": "problem", "answer": "solution"}, answer_format="boxed"), data)
    assert gsm8k["reference_answer"].null_count() == 0 and gsm8k.height == 300
    assert math["reference_answer"].null_count() == 0 and math.height == 500


def test_code_source_keeps_tests(tmp_path):
    path = tmp_path / "mbpp.json"
    path.write_text(json.dumps([{"prompt": "Add.", "code": "def add(a,b): return a+b",
                                 "test_list": ["assert add(1,2)==3", "assert add(0,0)==0"]}]))
    source = Source(name="mbpp", path=str(path), domain="code",
                    fields={"problem": "prompt", "answer": None, "tests": "test_list"})
    table = load_problems(source, tmp_path)
    assert json.loads(table["tests"][0])["test"] == "assert add(1,2)==3\nassert add(0,0)==0"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"question": "a", "answer": "#### 1"}\n{"question": "b", "answer": \n', ["bad.jsonl:2", "malformed JSON"]),
        (b'{"question": "a", "answer": "#### 1"}\n{"question": "\xff\xfe", "answer": "#### 2"}\n',
         ["bad.jsonl:2", "UTF-8"]),
        (b"", ["bad.jsonl", "empty"]),
        (b'{"q": "a", "answer": "#### 1"}\n', ["bad.jsonl", "'question'", "missing"]),
        (b'{"question": 5, "answer": "#### 1"}\n', ["bad.jsonl", "'question'", "must be text"]),
        (b'{"question": "a", "answer": "#### 1"}\n{"answer": "#### 2"}\n', ["record 2", "'question'", "null"]),
        (b'{"question": "a", "answer": "no marker"}\n', ["record 1", "'answer'", "####"]),
        (b'[1, 2]\n', ["bad.jsonl:1", "JSON object"]),
    ],
    ids=["malformed", "non-utf8", "empty", "missing-field", "wrong-type", "null-field", "no-answer", "not-object"],
)
def test_bad_input_names_file_record_and_field(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        load_problems(gsm8k_source(path), tmp_path)
    for fragment in expected:
        assert fragment in str(caught.value)


def test_bad_input_fails_the_run_cleanly_and_writes_nothing(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"question": "a", "answer": "#### 1"}\n{oops}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: bad\nsources:\n  - name: s\n    path: bad.jsonl\n"
                      "    fields: {problem: question}\n    answer_format: gsm8k\n"
                      f"output:\n  dir: {tmp_path / 'run'}\n")
    result = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(recipe)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "bad.jsonl:2: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "run").rglob("*.parquet"))


def test_problem_table_columns_match_the_schema_module():
    assert list(polars_schema("problem")) == [c.name for c in PROBLEM_COLUMNS]


def _forbid_slow_path(monkeypatch):
    from curate.sources import readers

    def slow_path(path):
        raise AssertionError("the record-by-record reader ran: the fast path failed")

    monkeypatch.setattr(readers, "jsonl_records", slow_path)


def test_a_clean_jsonl_file_takes_the_fast_path(tmp_path, monkeypatch):
    from curate.sources import readers

    _forbid_slow_path(monkeypatch)

    def raw_pass(*args):
        raise AssertionError("the raw-bytes pass ran, yet no text value reads like a JSON number or list")

    monkeypatch.setattr(readers, "_json_values_not_text", raw_pass)
    long_problem = "What is " + "1 + " * 20_000 + "1?"
    path = tmp_path / "clean.jsonl"
    path.write_text("".join(json.dumps({"q": q, "a": a, "note": {"n": 1}}) + "\n"
                            for q, a in (("short?", 1), (long_problem, 2.0), ("also short?", 2.5))))
    frame = load_problems(Source(name="clean", path=str(path), fields={"problem": "q", "answer": "a"}), tmp_path)
    assert frame["problem"].to_list() == ["short?", long_problem, "also short?"]
    assert frame["reference_answer"].to_list() == ["1", "2", "2.5"]


def test_text_that_reads_like_a_json_value_is_still_text(tmp_path, monkeypatch):
    # "42" and "[1, 2]" as strings look like what polars writes for a number or a list: the
    # raw bytes decide (the quotes are there), and the file still takes the fast path.
    _forbid_slow_path(monkeypatch)
    path = tmp_path / "lookalike.jsonl"
    path.write_text("".join(json.dumps({"q": q, "a": "1"}) + "\n" for q in ("42", "[1, 2]", "true", "Why?")))
    frame = load_problems(Source(name="lookalike", path=str(path), fields={"problem": "q", "answer": "a"}), tmp_path)
    assert frame["problem"].to_list() == ["42", "[1, 2]", "true", "Why?"]


@pytest.mark.parametrize("late_value, shown", [("42", "int 42"), ('["a", "b"]', "list ['a', 'b']"),
                                               ("true", "bool True"), ('{"x": 1}', "dict {'x': 1}")])
def test_a_non_text_problem_after_the_inferred_records_is_named(tmp_path, monkeypatch, late_value, shown):
    """polars infers the schema from the first records and would turn a later 42 into "42"."""
    from curate.sources import readers

    monkeypatch.setattr(readers, "INFER_RECORDS", 2)
    path = tmp_path / "late.jsonl"
    lines = [json.dumps({"q": f"What is {i}?", "a": str(i)}) for i in range(5)]
    lines.append('{"q": ' + late_value + ', "a": "5"}')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=rf"record 6: field 'q' must be text, got {re.escape(shown)}"):
        load_problems(Source(name="late", path=str(path), fields={"problem": "q", "answer": "a"}), tmp_path)


def test_a_mapped_field_first_seen_after_the_inferred_records_is_read(tmp_path, monkeypatch):
    from curate.sources import readers

    monkeypatch.setattr(readers, "INFER_RECORDS", 2)
    path = tmp_path / "late_key.jsonl"
    path.write_text("".join(json.dumps({"q": f"What is {i}?", **({"a": str(i)} if i > 3 else {})}) + "\n"
                            for i in range(6)))
    frame = load_problems(Source(name="late", path=str(path), fields={"problem": "q", "answer": "a"}), tmp_path)
    assert frame["reference_answer"].to_list() == [None, None, None, None, "4", "5"]


# Lines that hide a duplicate key or deep nesting from polars, each among 2,000 short records.
HIDDEN = {
    "nested duplicate": ('{"question": "q", "meta": {"x": 1, "x": 2}}', "'x' appears twice"),
    "white space before a colon": ('{"question": "q", "question" : "r"}', "'question' appears twice"),
    "escaped key": ('{"question": "q", "\\u0071uestion": "r"}', "'question' appears twice"),
    "key starting with a colon": ('{"question": "q", "m": ["v", ":k"], ":k": 1, ":k": 2}', "':k' appears twice"),
    "nested 20,000 deep": ('{"question": "q", "m": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested too deeply"),
}


@pytest.mark.parametrize("case", list(HIDDEN))
def test_python_reads_only_the_lines_that_may_hide_a_bad_key(tmp_path, monkeypatch, case):
    from curate.sources import readers

    parsed = []
    parse_line = readers._parse_line
    monkeypatch.setattr(readers, "_parse_line", lambda path, number, raw: parsed.append(number)
                        or parse_line(path, number, raw))
    line, expected = HIDDEN[case]
    chat = '{"question": "q", "turns": [{"role": "user", "text": "\\"a\\": 1, \\"a\\": 2"}, {"role": "assistant"}]}'
    lines = [json.dumps({"question": f"What is {i} + 1?", "answer": "#### 1", "note": "say \"a\": 1"})
             for i in range(2000)]
    lines[99], lines[1499] = chat, line
    path = tmp_path / "dump.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=expected) as caught:
        load_problems(Source(name="d", path=str(path), fields={"problem": "question"}), tmp_path)
    assert str(caught.value).startswith(f"{path}:1500: ")
    assert parsed == [100, 1500]  # the chat turns repeat "role": a false alarm, parsed and passed


def test_a_failure_inside_polars_names_the_mapped_fields_only(tmp_path, monkeypatch):
    from curate.sources import problems

    monkeypatch.setattr(problems, "problem_id_expr", lambda text: text.str.to_integer())
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"q": "not a number", "a": "1"}) + "\n")
    with pytest.raises(SourceError) as caught:
        load_problems(Source(name="p", path=str(path), fields={"problem": "q", "answer": "a"}), tmp_path)
    assert str(caught.value).startswith(f"{path}: mapping fields (problem 'q', answer 'a'): polars failed: ")
