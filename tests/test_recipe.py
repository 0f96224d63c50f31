"""Recipe loading: every mistake is reported with the file and the YAML line."""

import textwrap

import pytest

from curate.recipe import RecipeError, load_recipe

DATA = "../../curate/data"


def write_recipe(tmp_path, body: str):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "p.jsonl").write_text(
        '{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": "4"}\n'
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(body))
    return path


HEADER = """\
name: t
sources:
  - name: toy
    path: data/p.jsonl
steps:
"""


def error_of(path, overrides=()):
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, list(overrides))
    return caught.value.problems


def test_valid_recipe_builds_typed_steps(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 1\n    seed: 3\n")
    recipe = load_recipe(path)
    assert [s.id for s in recipe.steps] == ["sample"]
    assert recipe.steps[0].operator.config.seed == 3
    assert recipe.output_dir.name == "t"


def test_unknown_operator_names_file_and_line(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 1\n  - op: no_such_op\n")
    [problem] = error_of(path)
    assert problem.file == str(path)
    assert problem.line == 8
    assert "unknown operator 'no_such_op'" in problem.message
    assert "sample" in problem.message  # lists the known ones


def test_bad_field_type_names_the_field_line(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: many\n")
    [problem] = error_of(path)
    assert problem.line == 7
    assert problem.message.startswith("steps[0].n:")
    assert "integer" in problem.message


def test_unknown_config_field_is_an_error(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 2\n    sed: 1\n")
    [problem] = error_of(path)
    assert problem.line == 8 and "steps[0].sed" in problem.message


def test_missing_column_names_the_step_line(tmp_path):
    import slow_ops  # noqa: F401 - registers drop_long, which reads `length`

    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 1\n  - op: drop_long\n    max_length: 3\n")
    [problem] = error_of(path)
    assert problem.line == 8
    assert "needs column(s) length" in problem.message


def test_missing_source_location_and_top_level_typo(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nsources:\n  - name: x\nstepz: []\n")
    problems = error_of(path)
    messages = {p.message.split(":")[0]: p.line for p in problems}
    assert messages["sources[0]"] == 3
    assert messages["stepz"] == 4


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nsources: [\n  - oops\n")
    [problem] = error_of(path)
    assert problem.line >= 2 and "invalid YAML" in problem.message


def test_set_overrides_a_step_field_and_is_validated(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 1\n")
    assert load_recipe(path, ["sample.n=2"]).steps[0].operator.config.n == 2
    [problem] = error_of(path, ["sample.n=lots"])
    assert "steps[0].n" in problem.message


def test_repeated_operator_gets_distinct_ids(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 2\n  - op: sample\n    n: 1\n")
    assert [s.id for s in load_recipe(path).steps] == ["sample", "sample_2"]


def test_recipes_are_data_not_code(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - !!python/object/apply:os.system ['echo pwned']\n")
    [problem] = error_of(path)
    assert "invalid YAML" in problem.message


def test_shipped_recipes_validate():
    from pathlib import Path

    for recipe in sorted(Path(__file__).parent.parent.glob("recipes/*.yaml")):
        load_recipe(recipe)


def test_validate_catches_a_bad_eval_set_field_and_an_unknown_embedding_model(tmp_path):
    (tmp_path / "evals.jsonl").write_text('{"question": "What is 1+1?"}\n')
    body = HEADER + (
        f"  - op: decontaminate\n    eval_sets: [aime24, {tmp_path / 'evals.jsonl'}]\n"
        "  - op: semantic_dedup\n    model: bundled:minilm-fast\n"
        "  - op: semantic_dedup\n    model: ./no/such/folder\n"
    )
    problems = error_of(write_recipe(tmp_path, body))
    assert [p.line for p in problems] == [6, 8, 10]
    assert "eval set 'evals'" in problems[0].message
    assert "has no field 'problem' (fields: question)" in problems[0].message
    assert "unknown embedding model 'bundled:minilm-fast'" in problems[1].message
    assert "bundled:minilm, bundled:minilm-static" in problems[1].message
    assert "unknown embedding model './no/such/folder'" in problems[2].message
    assert all("\n" not in p.message for p in problems)
    # Known models (both bundled ones, a Hub id) and readable eval sets pass.
    fine = HEADER + ("  - op: decontaminate\n    eval_sets: [aime24]\n    model: bundled:minilm-static\n"
                     "  - op: semantic_dedup\n    model: sentence-transformers/all-MiniLM-L6-v2\n")
    assert len(load_recipe(write_recipe(tmp_path, fine)).steps) == 2


def test_a_misspelt_field_or_operator_gets_the_closest_name(tmp_path):
    path = write_recipe(tmp_path, HEADER.replace("    path:", "    limt: 1\n    path:")
                        + "  - op: sample\n    n: 2\n    sed: 1\n  - op: exact_dedpu\n")
    [operator] = error_of(path)  # operators are checked first
    assert "unknown operator 'exact_dedpu'; did you mean 'exact_dedup'?" in operator.message
    path.write_text(path.read_text().replace("exact_dedpu", "exact_dedup"))
    problems = {p.line: p.message for p in error_of(path)}
    assert problems == {4: "sources[0].limt: unknown field 'limt'; did you mean 'limit'?",
                        9: "steps[0].sed: unknown field 'sed'; did you mean 'seed'?"}


def test_a_bad_set_value_is_reported_at_the_set_not_the_recipe_line(tmp_path):
    path = write_recipe(tmp_path, HEADER + "  - op: sample\n    n: 1\n")
    [bad_value, typo] = error_of(path, ["sample.n=lots", "sample.sede=2"])
    assert (bad_value.file, bad_value.line) == (f"{path} (--set 'sample.n=lots')", 0)
    assert bad_value.message.startswith("steps[0].n:") and bad_value.hint == "fix the --set value"
    assert typo.file == f"{path} (--set 'sample.sede=2')" and "did you mean 'seed'?" in typo.message
    path.write_text(path.read_text().replace("n: 1", "n: many"))  # a good --set leaves file errors at their line
    [file_error] = error_of(path, ["sample.seed=2"])
    assert (file_error.file, file_error.line) == (str(path), 7)


def test_problems_found_after_parsing_are_reported_together(tmp_path):
    import slow_ops  # noqa: F401 - registers drop_long, which reads `length`

    path = write_recipe(tmp_path, HEADER + "  - op: drop_long\n    max_length: 3\n"
                        "  - op: semantic_dedup\n    model: bundled:no-such-model\n")
    problems = error_of(path)
    assert len(problems) == 2, problems
    assert "needs column(s) length" in problems[0].message
    assert "no-such-model" in str(problems[1])


def test_validate_refuses_a_problem_source_mapped_to_a_field_its_file_lacks(tmp_path):
    path = write_recipe(tmp_path, HEADER.replace("    path: data/p.jsonl", "    path: data/p.jsonl\n"
                                                 "    fields: {problem: question, answer: answer}")
                        + "  - op: sample\n    n: 1\n")
    [problem] = error_of(path)
    assert problem.line == 4  # the source's path
    assert "'question'" in problem.message and "missing" in problem.message
    assert "problem, answer" in problem.message  # the fields the file has
