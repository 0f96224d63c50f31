"""Trace sources: every row shape, ids, labels, bad input, recipes that import and generate."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from curate.core.rundir import RunDir
from curate.recipe import RecipeError, load_recipe
from curate.runner import run_recipe
from curate.schema import problem_id, trace_id
from curate.sources.config import Source
from curate.sources.readers import SourceError
from curate.sources.skythought import read_skythought
from curate.sources.traces import load_traces, trace_params
from tests.test_generate_openai import server, teacher  # noqa: F401 - the fake OpenAI server fixture

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "curate" / "data" / "traces"
FIXTURES = ROOT / "tests" / "fixtures" / "prune"


def source(path: Path, **config) -> Source:
    traces = {"tokenizer": "chars/4", **config.pop("traces", {})}
    return Source.model_validate({"name": "dump", "path": str(path), "kind": "traces", "traces": traces, **config})


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_generations_explode_with_their_labels_and_finish_reasons():
    traces = load_traces(source(DATA / "openr1_generations.jsonl", fields={"problem": "problem", "answer": "answer"},
                                traces={"shape": "generations", "completion": "generations",
                                        "label": "correctness_math_verify", "finish_reason": "finish_reasons"}),
                         ROOT)
    first = traces.filter(pl.col("problem") == "What is 17 + 25?").sort("sample_index")
    assert first["sample_index"].to_list() == [0, 1, 2]
    assert first["source_correct"].to_list() == [True, True, False]
    assert first["finish_reason"].to_list() == ["stop", "stop", "length"]
    assert first["reasoning"][0] == "17 + 25: 17 + 20 = 37, plus 5 is 42."
    assert first["answer_text"][0] == "The sum is $\\boxed{42}$."
    # numbers as answers: 42 and 42.0 render as "42", 1.5 stays "1.5"
    assert traces.unique("problem", maintain_order=True)["reference_answer"].to_list() == ["42", "42", "1.5"]


def test_messages_with_think_tags_split_into_reasoning_and_answer():
    traces = load_traces(source(DATA / "chat_messages.jsonl", fields={"answer": "answer"},
                                traces={"shape": "chat", "messages": "messages"}), ROOT)
    row = traces.row(0, named=True)
    assert row["problem"] == "What is 12 squared?"
    assert row["reasoning"] == "12 * 12 = 144."
    assert row["answer_text"] == "The answer is $\\boxed{144}$."
    assert row["finish_reason"] == "stop"
    assert json.loads(row["prompt"]) == [{"role": "system", "content": "Think step by step."},
                                         {"role": "user", "content": "What is 12 squared?"}]
    assert traces["reference_answer"].to_list() == ["144", "120"]


def test_sharegpt_conversations_and_an_unclosed_block_is_truncated():
    traces = load_traces(source(DATA / "sharegpt_conversations.jsonl", answer_format="boxed",
                                fields={"answer": "ground_truth_solution"},
                                traces={"shape": "chat", "messages": "conversations"}), ROOT)
    closed, cut = traces.rows(named=True)
    assert closed["problem"].endswith("What is 3 cubed?")
    assert closed["reasoning"] == "3 cubed is 3 * 3 * 3 = 27."
    assert closed["answer_text"] == "$\\boxed{27}$"  # solution tags stripped
    assert (closed["finish_reason"], cut["finish_reason"]) == ("stop", "length")
    assert cut["answer_text"] == "" and cut["reasoning"].startswith("The sum is 10 * 11 / 2.")


def test_reasoning_in_its_own_field_and_rows_with_usage_counts():
    separate = load_traces(source(DATA / "reasoning_content.jsonl", fields={"problem": "prompt", "answer": "gold"},
                                  traces={"completion": "content", "reasoning": "reasoning_content",
                                          "teacher": {"field": "model"}}), ROOT)
    row = separate.row(0, named=True)
    assert row["reasoning"].startswith("2^10 = 1024") and row["answer_text"] == "The answer is $\\boxed{1024}$."
    assert row["completion"].startswith("<think>2^10") and row["teacher"] == "deepseek-reasoner"
    assert separate["reference_answer"].to_list() == ["1024", "6"]

    rows = load_traces(source(DATA / "api_log_rows.jsonl", fields={"problem": "question", "answer": "reference"},
                              traces={"completion": "output", "label": "is_correct", "finish_reason": "finish_reason",
                                      "teacher": {"field": "model"}, "prompt_tokens": "prompt_tokens",
                                      "completion_tokens": "completion_tokens"}), ROOT)
    assert rows["source_correct"].to_list() == [True, False, True, False]  # 0/1 labels
    assert rows["sample_index"].to_list() == [0, 1, 0, 1]  # file order within problem and teacher
    assert (rows["reasoning_tokens"] + rows["answer_tokens"]).to_list() == [31, 18, 16, 24]
    assert rows["prompt_tokens"].to_list() == [14, 14, 15, 15]


def test_ids_follow_the_schema_and_are_stable(tmp_path):
    config = {"fields": {"problem": "question", "answer": "gt"},
              "traces": {"shape": "generations", "completion": "code", "label": "score", "teacher": "sky"}}
    first = load_traces(source(DATA / "skythought_skyt1.jsonl", **config), ROOT)
    again = load_traces(source(DATA / "skythought_skyt1.jsonl", **config), ROOT)
    assert first["trace_id"].to_list() == again["trace_id"].to_list()
    row = first.row(0, named=True)
    assert row["problem_id"] == problem_id(row["problem"])
    assert row["trace_id"] == trace_id(row["problem_id"], "sky", "sky", 0, trace_params(source(DATA, **config)))
    # the SkyThought reader is this shape: same rows, the labels as `correct` too
    read = read_skythought(DATA / "skythought_skyt1.jsonl", "sky")
    assert read["problem_id"].to_list() == first["problem_id"].to_list()
    assert read["correct"].to_list() == first["source_correct"].to_list()


def test_real_skythought_fixture_truncation_from_open_thought_blocks():
    traces = read_skythought(FIXTURES / "skyt1_longcot_subset.jsonl", "skyt1")
    completion = traces["completion"]
    open_blocks = (completion.str.contains("<|begin_of_thought|>", literal=True)
                   & ~completion.str.contains("<|end_of_thought|>", literal=True))
    assert open_blocks.sum() > 0
    assert (traces.filter(open_blocks)["finish_reason"] == "length").all()
    assert (traces.filter(~open_blocks)["finish_reason"] == "stop").all()
    assert (traces.filter(open_blocks)["answer_text"] == "").all()
    solved = traces.filter(completion.str.contains("<|begin_of_solution|>", literal=True))
    assert solved.height > 0
    assert not solved["answer_text"].str.contains("_of_solution|>", literal=True).any()
    assert solved["answer_text"].str.contains(r"\\boxed\{").all()


BAD = {
    "lengths differ": ([{"problem": "p", "answer": "1", "gens": ["a", "b", "c"], "labels": [True, False]}],
                       ["record 1", "'labels'", "2 element(s)", "3"]),
    "label not boolean": ([{"problem": "p", "answer": "1", "gens": ["a"], "labels": [True]},
                           {"problem": "q", "answer": "1", "gens": ["a", "b"], "labels": ["yes", "no"]}],
                          ["record 2", "'labels'", "boolean"]),
    "label not 0/1": ([{"problem": "p", "answer": "1", "gens": ["a"], "labels": [2]}], ["record 1", "'labels'"]),
    "empty completion": ([{"problem": "p", "answer": "1", "gens": ["a", "  "], "labels": [True, False]}],
                         ["record 1", "'gens'", "empty"]),
    "null completion": ([{"problem": "p", "answer": "1", "gens": ["a"], "labels": [True]},
                         {"problem": "q", "answer": "1", "gens": ["<think>x</think>y", None], "labels": [True, False]}],
                        ["record 2", "'gens'", "empty"]),
    "missing field": ([{"problem": "p", "answer": "1", "generations": ["a"], "labels": [True]}],
                      ["'gens'", "missing"]),
    "problem a number": ([{"problem": "p", "answer": "1", "gens": ["a"], "labels": [True]},
                          {"problem": 42, "answer": "1", "gens": ["a"], "labels": [True]}],
                         ["record 2", "'problem'", "must be text", "int"]),
    "problem a list": ([{"problem": ["a", "b"], "answer": "1", "gens": ["a"], "labels": [True]}],
                       ["record 1", "'problem'", "text"]),
    "answer a list": ([{"problem": "p", "answer": ["1"], "gens": ["a"], "labels": [True]}],
                      ["record 1", "'answer'"]),
    "a generation a number": ([{"problem": "p", "answer": "1", "gens": ["a", None], "labels": [True, False]},
                               {"problem": "q", "answer": "1", "gens": ["a \\\"x\\\"", 7], "labels": [True, True]}],
                              ["record 2", "'gens'", "must be text", "int 7"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_trace_input_names_file_record_and_field(tmp_path, case):
    records, expected = BAD[case]
    path = write_jsonl(tmp_path / "dump.jsonl", records)
    with pytest.raises(SourceError) as caught:
        load_traces(source(path, traces={"shape": "generations", "completion": "gens", "label": "labels"}), tmp_path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for fragment in expected:
        assert fragment in message, message


def recipe_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_input_stops_the_run_before_anything_is_written(tmp_path):
    dump = write_jsonl(tmp_path / "dump.jsonl", BAD["lengths differ"][0])
    path = recipe_file(tmp_path, {"name": "bad", "output": {"dir": str(tmp_path / "run")},
                                  "sources": [{"name": "d", "kind": "traces", "path": str(dump),
                                               "traces": {"shape": "generations", "completion": "gens",
                                                          "label": "labels", "tokenizer": "chars/4"}}],
                                  "steps": [{"op": "verify", "workers": 1}]})
    with pytest.raises(SourceError, match="record 1"):
        run_recipe(load_recipe(path), tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.parquet"))


def test_validate_knows_trace_columns_and_reports_absent_fields(tmp_path):
    dump = write_jsonl(tmp_path / "dump.jsonl", [{"question": "q", "gt": "1", "output": "x"}])
    base = {"name": "t", "sources": [{"name": "d", "kind": "traces", "path": str(dump),
                                      "fields": {"problem": "question", "answer": "gt"},
                                      "traces": {"completion": "output", "label": "score"}}],
            "steps": [{"op": "verify"}, {"op": "grade"}]}
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe_file(tmp_path, base))
    assert "'score' (label) not in the first record" in str(caught.value)
    del base["sources"][0]["traces"]["label"]
    assert [s.id for s in load_recipe(recipe_file(tmp_path, base)).steps] == ["verify", "grade"]
    # --set addresses a source by name
    other = write_jsonl(tmp_path / "other.jsonl", [{"question": "q", "gt": "1", "text": "x"}])
    with pytest.raises(RecipeError, match="'output' \\(completion\\)"):
        load_recipe(recipe_file(tmp_path, base), [f"sources.d.path={other}"])


def test_problem_sources_next_to_trace_sources_need_a_generating_step(tmp_path):
    dump = write_jsonl(tmp_path / "dump.jsonl", [{"problem": "q", "answer": "1", "completion": "x"}])
    problems = write_jsonl(tmp_path / "problems.jsonl", [{"problem": "q", "answer": "1"}])
    path = recipe_file(tmp_path, {"name": "t", "sources": [
        {"name": "p", "path": str(problems)}, {"name": "d", "kind": "traces", "path": str(dump)}],
        "steps": [{"op": "verify"}]})
    with pytest.raises(RecipeError, match="need a step that generates traces"):
        load_recipe(path)


def test_imported_and_generated_traces_of_one_problem_grade_together(tmp_path, server):  # noqa: F811
    problem = "What is 6 times 7?"
    problems = write_jsonl(tmp_path / "problems.jsonl", [{"problem": problem, "answer": "42"}])
    # the same problem, typed with other white space: the same problem_id
    dump = write_jsonl(tmp_path / "dump.jsonl", [
        {"question": "What is  6 times 7?\n", "gt": 42, "code": ["<think>6*7</think> 42", "<think>x</think> 41"],
         "score": [True, False]}])
    path = recipe_file(tmp_path, {
        "name": "mixed", "output": {"dir": str(tmp_path / "run")}, "cache_dir": str(tmp_path / "cache"),
        "sources": [{"name": "p", "path": str(problems)},
                    {"name": "d", "kind": "traces", "path": str(dump),
                     "fields": {"problem": "question", "answer": "gt"},
                     "traces": {"shape": "generations", "completion": "code", "label": "score",
                                "teacher": "dump", "tokenizer": "chars/4"}}],
        "steps": [{"op": "exact_dedup"}, {"op": "generate", "teachers": [teacher(server.url)]},
                  {"op": "verify", "workers": 1}, {"op": "grade"}]})
    result = run_recipe(load_recipe(path), tmp_path / "run")
    out = pl.read_parquet(result.output)
    assert sorted(out["teacher"].to_list()) == ["dump", "dump", "remote", "remote"]
    assert out["problem_id"].n_unique() == 1
    assert (out["n_samples"] == 4).all() and (out["n_teachers"] == 2).all()
    imported = out.filter(pl.col("teacher") == "dump").sort("sample_index")
    assert imported["correct"].to_list() == [True, False] == imported["source_correct"].to_list()
    first_ids = sorted(out["trace_id"].to_list())
    rerun = run_recipe(load_recipe(path), tmp_path / "run2")
    assert sorted(pl.read_parquet(rerun.output)["trace_id"].to_list()) == first_ids


def test_curate_traces_recipe_runs_offline_and_the_audit_shows_label_agreement(tmp_path):
    """The quickstart family's trace recipe, end to end (CI runs it here)."""
    from curate.audit import Audit

    recipe = load_recipe(ROOT / "recipes" / "curate-traces.yaml",
                         [f"output.dir={tmp_path / 'run'}", f"publish.output_dir={tmp_path / 'published'}"])
    result = run_recipe(recipe, tmp_path / "run")
    assert result.published is not None
    out = pl.read_parquet(result.output)
    assert out["correct"].all() and set(out["source"]) >= {"openr1", "chat", "sharegpt", "reasoner-api"}
    table = Audit.open(tmp_path / "run").label_agreement()
    total = table.filter(pl.col("source") == "all").row(0, named=True)
    assert total["traces"] == 16  # openr1 6 + skythought 6 + api logs 4 carry labels
    assert total["agree"] == 16


@pytest.mark.parametrize("markers", [("<think>", "</think>"), ("<|begin_of_thought|>", "<|end_of_thought|>")])
def test_long_traces_split_as_generation_splits_them(tmp_path, markers):
    """Long reasoning reads the same as generation's own split, white space and non-ASCII
    text included."""
    from curate.llm.reasoning import split_reasoning

    start, end = markers
    step = "Étape 中文 step: 12 + 30 = 42.\u3000"
    outputs = [f"{start}\n{step * 40}\n{end}\n\nThe answer is $\\boxed{{42}}$.\n",  # closed, padded
               f"{start}{step * 30}  \u3000",  # cut off: all reasoning, no answer
               f"{start}\n\n{' ' * 30}{step * 25}{' ' * 30}\n{end}42",  # white space past the window
               f"{step * 20}{end} 42 \u00a0",  # only the end marker (the template opened the block)
               f"no reasoning at all, {step * 20}"]
    path = write_jsonl(tmp_path / "long.jsonl", [{"problem": f"p{i}", "answer": "42", "output": text}
                                                          for i, text in enumerate(outputs)])
    traces = load_traces(source(path, traces={"completion": "output", "reasoning_markers": [list(markers)]}), tmp_path)
    expected = [split_reasoning(text, None, start, end) for text in outputs]
    assert traces["reasoning"].to_list() == [reasoning for _, reasoning, _ in expected]
    assert traces["answer_text"].to_list() == [answer for _, _, answer in expected]
    assert traces["completion"].to_list() == outputs
    assert traces["finish_reason"].to_list() == ["stop", "length", "stop", "stop", "stop"]


def test_empty_generations_are_skipped_and_counted_when_asked(tmp_path):
    from curate.sources.traces import import_traces

    records = [{"problem": f"p{i}", "answer": "1", "gens": ["<think>r</think>a", "", " \u3000"][i % 3:i % 3 + 1]}
               for i in range(9)]
    path = write_jsonl(tmp_path / "dump.jsonl", records)
    config = {"shape": "generations", "completion": "gens"}
    with pytest.raises(SourceError, match=r"record 2: field 'gens' is empty.*on_empty: skip"):
        load_traces(source(path, traces=config), tmp_path)
    kept, skipped = import_traces(source(path, traces={**config, "on_empty": "skip"}), tmp_path)
    assert kept["problem"].to_list() == ["p0", "p3", "p6"]
    assert skipped["reject_reason"].to_list() == ["empty_completion"] * 6
    assert [json.loads(d)["record"] for d in skipped["reject_detail"]] == [2, 3, 5, 6, 8, 9]
    assert set(skipped.columns) >= set(kept.columns)


def test_skipped_empty_traces_reach_the_runs_funnel_and_rejections(tmp_path):
    records = [{"problem": f"p{i}", "answer": "1", "gens": ["<think>r</think>#### 1", ""]} for i in range(3)]
    dump = write_jsonl(tmp_path / "dump.jsonl", records)
    path = recipe_file(tmp_path, {"name": "skip", "output": {"dir": str(tmp_path / "run")},
                                  "sources": [{"name": "d", "kind": "traces", "path": str(dump),
                                               "traces": {"shape": "generations", "completion": "gens",
                                                          "on_empty": "skip", "tokenizer": "chars/4"}}],
                                  "steps": [{"op": "verify", "workers": 1}]})
    result = run_recipe(load_recipe(path), tmp_path / "run")
    load = RunDir(result.run_dir).read_manifest().step("load")
    assert load is not None
    assert (load.id, load.rows_in, load.rows_out) == ("load", 6, 3)
    assert load.metrics == {"imported_traces": 3, "skipped_traces": 3}
    rejections = pl.read_parquet(result.run_dir / "rejections.parquet")
    assert rejections.filter(pl.col("step") == "load")["reject_reason"].to_list() == ["empty_completion"] * 3


def test_next_to_problem_sources_the_load_step_counts_problems_and_skipped_traces_apart(tmp_path, server):  # noqa: F811
    problems = write_jsonl(tmp_path / "problems.jsonl", [{"problem": f"q{i}", "answer": "1"} for i in range(2)])
    records = [{"problem": f"p{i}", "answer": "1", "gens": ["<think>r</think>#### 1", ""]} for i in range(3)]
    dump = write_jsonl(tmp_path / "dump.jsonl", records)
    path = recipe_file(tmp_path, {
        "name": "mixed", "output": {"dir": str(tmp_path / "run")}, "cache_dir": str(tmp_path / "cache"),
        "sources": [{"name": "p", "path": str(problems)},
                    {"name": "d", "kind": "traces", "path": str(dump),
                     "traces": {"shape": "generations", "completion": "gens", "on_empty": "skip",
                                "tokenizer": "chars/4"}}],
        "steps": [{"op": "generate", "teachers": [teacher(server.url)]}, {"op": "verify", "workers": 1}]})
    result = run_recipe(load_recipe(path), tmp_path / "run")
    load = RunDir(result.run_dir).read_manifest().step("load")
    assert load is not None
    assert (load.rows_in, load.rows_out) == (2, 2)  # problems in, problems out: no traces mixed in
    assert load.metrics == {"imported_traces": 3, "skipped_traces": 3}
    rejections = pl.read_parquet(result.run_dir / "rejections.parquet")
    assert rejections.filter(pl.col("step") == "load")["reject_reason"].to_list() == ["empty_completion"] * 3


def test_text_labels_are_mapped_by_label_values(tmp_path):
    records = [{"problem": "p", "answer": "1", "out": "a", "status": "matched"},
               {"problem": "q", "answer": "1", "out": "b", "status": "mismatched"},
               {"problem": "r", "answer": "1", "out": "c", "status": None}]
    path = write_jsonl(tmp_path / "dump.jsonl", records)
    mapped = {"completion": "out", "label": "status", "label_values": {"matched": True, "mismatched": False}}
    traces = load_traces(source(path, traces=mapped), tmp_path)
    assert traces["source_correct"].to_list() == [True, False, None]
    write_jsonl(path, [*records, {"problem": "s", "answer": "1", "out": "d", "status": "Matched"}])
    with pytest.raises(SourceError, match=r"record 4: field 'status' \(mapped to label\) is 'Matched', which "
                                          r"label_values does not map"):
        load_traces(source(path, traces=mapped), tmp_path)
    with pytest.raises(SourceError, match=r"record 1: field 'status'.*text labels need `label_values`"):
        load_traces(source(path, traces={"completion": "out", "label": "status"}), tmp_path)
    with pytest.raises(ValueError, match="label_values"):
        source(path, traces={**mapped, "label_values": {"matched": "yes"}})


def test_multiple_choice_options_are_appended_to_the_problem(tmp_path):
    from curate.sources.problems import load_problems

    records = [{"question": "Which is prime?", "choices": ["4", "7 (seven)", "9"], "answer": "B", "out": "B"},
               {"question": "No options here", "choices": [], "answer": "A", "out": "A"}]
    path = write_jsonl(tmp_path / "mc.jsonl", records)
    config = {"domain": "choice", "fields": {"problem": "question", "options": "choices"}}
    traces = load_traces(source(path, traces={"completion": "out"}, **config), tmp_path)
    problems = load_problems(Source.model_validate({"name": "mc", "path": str(path), **config}), tmp_path)
    expected = ["Which is prime?\n\nA. 4\nB. 7 (seven)\nC. 9", "No options here"]
    assert traces["problem"].to_list() == expected == problems["problem"].to_list()
    assert "choices" not in traces["metadata"][0]
    write_jsonl(path, [*records, {"question": "q", "choices": ["x", None], "answer": "A", "out": "A"}])
    with pytest.raises(SourceError, match=r"record 3: field 'choices' \(mapped to options\)"):
        load_traces(source(path, traces={"completion": "out"}, **config), tmp_path)
    write_jsonl(path, [*records, {"question": "q", "choices": "A or B", "answer": "A", "out": "A"}])
    with pytest.raises(SourceError, match=r"record 3: field 'choices' must be a list"):
        load_problems(Source.model_validate({"name": "mc", "path": str(path), **config}), tmp_path)


def test_the_dumps_own_token_counts_win_over_the_tokenizer(tmp_path, monkeypatch):
    from curate.sources import traces as traces_module

    def no_tokenizer(*args):
        raise AssertionError("the tokenizer ran, yet the dump gives every count")

    monkeypatch.setattr(traces_module, "count_tokens", no_tokenizer)
    path = write_jsonl(tmp_path / "dump.jsonl", [
        {"problem": "p", "answer": "1", "out": "<think>long reasoning here</think>1", "pt": 5, "ct": 100},
        {"problem": "q", "answer": "1", "out": "1", "pt": 6, "ct": 3}])
    traces = load_traces(source(path, traces={"completion": "out", "prompt_tokens": "pt", "completion_tokens": "ct",
                                              "tokenizer": "bundled:smollm2"}), tmp_path)
    assert (traces["reasoning_tokens"] + traces["answer_tokens"]).to_list() == [100, 3]
    assert traces["reasoning_tokens"].to_list() == [95, 0]  # shared out by characters: 19 of 20
    assert traces["prompt_tokens"].to_list() == [5, 6]


def test_tokens_are_counted_batch_by_batch_as_in_one_batch(monkeypatch):
    from tokenizers import Tokenizer

    from curate.sources import traces as traces_module
    from curate.sources.traces import count_tokens

    texts = [f"<think>{'Étape 中文 ' * i}{i} + 30</think> The answer is {i + 30}." for i in range(7)] + [None, ""]
    whole = Tokenizer.from_file(str(traces_module.SHIPPED_TOKENIZERS["bundled:smollm2"]))
    expected = [len(whole.encode(text or "", add_special_tokens=False).ids) for text in texts]
    monkeypatch.setattr(traces_module, "TOKENIZE_BATCH", 2)  # 9 texts: four full batches and one of one
    assert count_tokens(pl.Series(texts), "bundled:smollm2", None).to_list() == expected


def test_the_shipped_tokenizer_counts_as_the_bundled_models_own():
    """curate/data/tokenizers/smollm2/tokenizer.json was extracted from the bundled GGUF."""
    from transformers import AutoTokenizer

    from curate.models.bundled import ModelNotFoundError, smollm2_gguf
    from curate.sources.traces import count_tokens

    try:
        gguf = smollm2_gguf()
    except ModelNotFoundError as error:
        pytest.skip(f"the bundled SmolLM2 is not installed: {error}")

    texts = ["<think>Étape 中文 🙂\u3000 12 + 30 = 42</think>\n\nThe answer is $\\boxed{42}$.", "", "  x  ",
             "def f(x):\n    return x ** 2  # 平方"]
    own = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    expected = [len(ids) for ids in own(texts, add_special_tokens=False)["input_ids"]]
    assert count_tokens(pl.Series(texts), "bundled:smollm2", None).to_list() == expected


BAD_VALUES = {
    "NaN answer": ('{"problem": "q", "answer": NaN, "completion": "x"}', ["record 2", "'answer'", "finite", "nan"]),
    "1e999 answer": ('{"problem": "q", "answer": 1e999, "completion": "x"}', ["record 2", "'answer'", "finite"]),
    "duplicate key": ('{"problem": "q", "answer": "1", "completion": "x", "completion": "y"}',
                      [":2:", "'completion'", "twice"]),
    "empty problem": ('{"problem": " \\u3000", "answer": "1", "completion": "x"}', ["record 2", "'problem'", "empty"]),
    "nested 20,000 deep": ('{"problem": "q", "answer": "1", "completion": "x", "meta": ' + "[" * 20_000
                           + "]" * 20_000 + "}", [":2:", "nested too deeply"]),
}


@pytest.mark.parametrize("kind", ["traces", "problems"])
@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_give_one_line_naming_file_record_and_field(tmp_path, case, kind):
    from curate.sources.problems import load_problems

    line, expected = BAD_VALUES[case]
    path = tmp_path / "dump.jsonl"
    path.write_text('{"problem": "p", "answer": "1", "completion": "<think>a</think>b"}\n' + line + "\n")
    load = load_traces if kind == "traces" else load_problems
    config = source(path) if kind == "traces" else Source.model_validate({"name": "d", "path": str(path)})
    with pytest.raises(SourceError) as caught:
        load(config, tmp_path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for fragment in expected:
        assert fragment in message, message


@pytest.mark.parametrize("text, expected", [('[{"p": 1, "p": 2}]', "'p' appears twice"),
                                            ("[" * 20_000 + "]" * 20_000, "nested too deeply")])
def test_a_json_file_with_a_duplicate_key_or_deep_nesting_is_named(tmp_path, text, expected):
    path = tmp_path / "dump.json"
    path.write_text(text)
    with pytest.raises(SourceError, match=expected) as caught:
        load_traces(source(path), tmp_path)
    assert str(path) in str(caught.value)


def test_a_failure_inside_polars_names_the_file_and_fields(tmp_path, monkeypatch):
    from curate.sources import traces as traces_module

    def failing_split(texts, markers, reasoning_contents=None):
        return texts.to_frame("completion").with_columns(answer=pl.col("completion").str.to_integer())

    monkeypatch.setattr(traces_module, "split_reasoning_frame", failing_split)
    path = write_jsonl(tmp_path / "dump.jsonl", [{"problem": "p", "answer": "1", "completion": "not a number"}])
    with pytest.raises(SourceError) as caught:
        load_traces(source(path), tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: mapping ") and "'completion' as completion" in message
    assert "polars failed: " in message and "\n" not in message
