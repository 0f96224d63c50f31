"""Recipes: load a YAML file into typed models, or fail with errors that name file and line.

A recipe is data, never code: it is read with safe YAML (curate.core.yamlsafe: no tags, no
duplicate keys, bounded aliases), operators are looked up in
the registry's allow-list, and everything is validated (operator names, config fields and
types, the columns each step needs) before any step runs.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from curate.catalogue import registry
from curate.core.io import NotRegularFileError, file_kind, read_regular
from curate.core.operator import Operator, OperatorConfig
from curate.core.overrides import OverrideError, parse_override, set_path
from curate.core.yamlsafe import MAX_YAML_BYTES, YamlInputError, load_yaml
from curate.evals.ablate import AblateConfig
from curate.evals.compare import CompareConfig
from curate.evals.evaluate import EvalConfig
from curate.evals.suite import EvalSet
from curate.publish.config import PublishConfig
from curate.schema import IMPORT_COLUMNS, PROBLEM_COLUMNS, TRACE_COLUMNS
from curate.sources.config import Source, StrictModel
from curate.sources.readers import SourceError
from curate.sources.traces import first_record_fields, mapped_fields
from curate.train.config import TrainConfig

STEP_KEYS = ("op", "id", "chunk_size")
# A recipe name and step ids become folder names (runs/{name}, steps/NN-<id>-...): one safe
# path part each, never '..', a '/' or a newline.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A Hub dataset is owner/name; anything else (`../folder`, `./x`, a bare `x`) is a local
# folder to datasets.load_dataset, read from wherever the command runs.
HUB_DATASET_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class Output(StrictModel):
    dir: str = Field("runs/{name}", description="Run directory; {name} is the recipe name.")


class EvalSection(EvalConfig):
    """The recipe's `eval:` section: evaluate a model (`model.model: student` is the one this
    recipe trained) on held-out problems, verified like teachers are."""

    sources: list[Source] = Field(min_length=1, description="Held-out problems (same form as the recipe's sources).")
    sets: list[EvalSet] = Field(default_factory=list, description="More sets: prompt variants, out-of-distribution.")


class CompareSection(CompareConfig):
    """The recipe's `compare:` section: two datasets, one student, the same held-out problems."""

    sources: list[Source] = Field(min_length=1, description="Held-out problems both students are evaluated on.")


class StepBase(StrictModel):
    op: str
    id: str | None = Field(None, description="Step id (default: the operator name).")
    chunk_size: int | None = Field(None, ge=1, description="Rows per chunk for batch operators.")


def step_models() -> dict[str, type[OperatorConfig]]:
    """One model per operator: `op` + `id` + `chunk_size` + the operator's config fields."""
    models: dict[str, type[OperatorConfig]] = {}
    for name, operator in registry().items():
        op_type: Any = Literal[name]  # built at run time: a type to pydantic, a value to mypy
        models[name] = create_model(
            f"Step_{name}",
            __base__=operator.Config,
            op=(op_type, ...),
            id=(str | None, Field(None, description="Step id (default: the operator name).")),
            chunk_size=(int | None, Field(None, ge=1, description="Rows per chunk (batch operators).")),
        )
    return models


class RecipeSections(StrictModel):
    # A recipe file's sections; `recipe_model` types `steps` by the registered operators.
    name: str = Field(description="Recipe name.")
    version: str = Field("0.1.0", description="Recipe version.")
    description: str = Field("", description="What the recipe makes.")
    sources: list[Source] = Field(min_length=1)
    steps: list[Any] = Field(default_factory=list)
    output: Output = Field(default_factory=Output)
    cache_dir: str | None = Field(None, description="Shared cache (generations, embeddings).")
    publish: PublishConfig | None = Field(None, description="Publish the output as a versioned dataset.")
    train: TrainConfig | None = Field(None, description="Fine-tune a student on the published dataset.")
    eval: EvalSection | None = Field(None, description="Evaluate a model (e.g. the student) on held-out problems.")
    compare: CompareSection | None = Field(None, description="`curate compare`: two datasets, one student.")
    ablate: AblateConfig | None = Field(None, description="`curate ablate`: dataset variants x seeds.")


def recipe_model() -> type[RecipeSections]:
    steps = list(step_models().values())
    # A union built at run time: a type to pydantic, a value to mypy.
    step_union: Any = Annotated[Union[tuple(steps)], Field(discriminator="op")]  # noqa: UP007
    return create_model("Recipe", __base__=RecipeSections, steps=(list[step_union], Field(default_factory=list)))


def recipe_json_schema() -> dict:
    schema = recipe_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "curate recipe"
    return schema


@dataclass
class Step:
    id: str
    op: str
    operator: Operator
    config: dict
    chunk_size: int
    line: int


@dataclass
class Recipe:
    path: Path
    text: str
    name: str
    version: str
    description: str
    sources: list[Source]
    steps: list[Step]
    output_dir: Path
    cache_dir: Path | None
    publish: PublishConfig | None
    train: TrainConfig | None = None
    eval: EvalSection | None = None
    compare: CompareSection | None = None
    ablate: AblateConfig | None = None
    overrides: list[str] = field(default_factory=list)
    lines: _LineIndex | None = None  # YAML line of a location, e.g. ("sources", 0, "path")

    def line(self, *location: str | int) -> int:
        return self.lines.line(location) if self.lines is not None else 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass
class Problem:
    file: str
    line: int
    message: str
    hint: str = ""  # what to do about it; the command line adds a generic one when empty

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


class RecipeError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    path = Path(path)
    file = str(path)
    try:
        raw = read_regular(path, MAX_YAML_BYTES)
        if len(raw) > MAX_YAML_BYTES:
            raise RecipeError([Problem(file, 0, f"the recipe is over {MAX_YAML_BYTES:,} bytes; the limit is "
                                                f"{MAX_YAML_BYTES:,}")])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, NotRegularFileError) as error:
        raise RecipeError([Problem(file, 0, f"cannot read recipe: {_reason(error)}")]) from None
    try:
        loaded = load_yaml(text, "the recipe")
    except YamlInputError as error:
        raise RecipeError([Problem(file, error.line, str(error), "fix the YAML at that line")]) from None
    data, node = loaded.data, loaded.node
    if not isinstance(data, dict):
        raise RecipeError([Problem(file, 1, "a recipe is a mapping with name, sources and steps")])
    lines = _LineIndex(node)
    overridden = _apply_overrides(data, overrides, file)
    _check_operator_names(data, lines, file)
    try:
        model = recipe_model().model_validate(data)
    except ValidationError as error:
        raise RecipeError([_validation_problem(e, data, lines, file, overridden) for e in error.errors()]) from None
    steps = _build_steps(model, lines, file)
    # The checks below are independent: all their problems are reported at once.
    problems: list[Problem] = []
    produced = _collect(problems, _check_columns, steps, model.sources, lines, file)
    _collect(problems, _check_names, model, lines, file)
    _collect(problems, _check_configs, steps, path.parent, file)
    before = len(problems)
    _collect(problems, _check_source_kinds, model, path.parent, lines, file)
    if len(problems) == before:  # a source that cannot be opened is not read for its fields
        _collect(problems, _check_mapped_fields, model.sources, path.parent, lines, file)
    if model.publish is not None and produced is not None:
        _collect(problems, _check_publish, model.publish, produced, lines, file)
    if problems:
        raise RecipeError(problems)
    output_dir = model.output.dir.replace("{name}", model.name)
    return Recipe(
        path=path,
        text=text,
        name=model.name,
        version=model.version,
        description=model.description,
        sources=model.sources,
        steps=steps,
        output_dir=Path(output_dir),
        cache_dir=Path(model.cache_dir) if model.cache_dir else None,
        publish=model.publish,
        train=model.train,
        eval=model.eval,
        compare=model.compare,
        ablate=model.ablate,
        overrides=list(overrides),
        lines=lines,
    )


class _LineIndex:
    """Maps a pydantic error location to the YAML line it came from."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, loc: tuple) -> int:
        node = self.root
        if node is None:
            return 1
        for key in loc:
            child = self._child(node, key)
            if child is not None:  # keys not in the YAML (union tags, missing fields) are skipped
                node = child
        return node.start_mark.line + 1

    @staticmethod
    def _child(node: yaml.Node, key: Any) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == key:
                    return value_node
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            return node.value[key]
        return None


def _collect(problems: list[Problem], check, *args):
    """`check(*args)`, its RecipeError's problems added to `problems` (then None)."""
    try:
        return check(*args)
    except RecipeError as error:
        problems.extend(error.problems)
        return None


def _validation_problem(error: Any, data: dict, lines: _LineIndex, file: str, overridden: dict[str, str]) -> Problem:
    """One pydantic error at its recipe line, or at the --set that wrote the value; an
    unknown field gets the closest known name."""
    dotted = _dotted(error["loc"], data)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = _unknown_field(str(error["loc"][-1]), _known_fields(error["loc"], data))
    for location, text in overridden.items():
        if dotted == location or dotted.startswith((f"{location}.", f"{location}[")):
            return Problem(f"{file} (--set {text!r})", 0, f"{dotted}: {message}", "fix the --set value")
    return Problem(file, lines.line(error["loc"]), f"{dotted}: {message}")


def _unknown_field(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r} (known: {', '.join(known)})" if known else f"unknown field {name!r}"


def _known_fields(loc: tuple, data: dict) -> list[str]:
    """The field names allowed where `loc`'s last key was written (empty when not found)."""
    parent = list(loc[:-1])
    model: Any = recipe_model()
    if parent[:1] == ["steps"] and len(parent) >= 2:
        step = (data.get("steps") or [])[parent[1]]
        model = step_models().get(str(step.get("op"))) if isinstance(step, dict) else None
        parent = [key for key in parent[2:] if not (isinstance(step, dict) and key == step.get("op"))]
    for key in parent:
        if model is None:
            return []
        if isinstance(key, str):
            info = model.model_fields.get(key)
            model = _model_in(info.annotation) if info is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> Any:
    """The pydantic model a field holds, directly or inside Optional, list or dict; else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _dotted(loc: tuple, data: dict) -> str:
    parts: list[str] = []
    current: Any = data
    for key in loc:
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and isinstance(key, int) and key < len(current):
            current = current[key]
        elif isinstance(current, dict) and key not in current and current.get("op") == key:
            continue  # the discriminator tag pydantic adds for step unions
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(parts).lstrip(".") or "recipe"


def _check_operator_names(data: dict, lines: _LineIndex, file: str) -> None:
    known = registry()
    problems = []
    for index, step in enumerate(data.get("steps") or []):
        if not isinstance(step, dict) or "op" not in step:
            problems.append(Problem(file, lines.line(("steps", index)), f"steps[{index}]: a step needs `op: NAME`"))
        elif step["op"] not in known:
            problems.append(
                Problem(
                    file,
                    lines.line(("steps", index, "op")),
                    f"steps[{index}].op: {_unknown_operator(str(step['op']), list(known))}",
                )
            )
    if problems:
        raise RecipeError(problems)


def _unknown_operator(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return (f"unknown operator {name!r}; did you mean {close[0]!r}?" if close
            else f"unknown operator {name!r} (known: {', '.join(known)})")


def _apply_overrides(data: dict, overrides: Sequence[str], file: str) -> dict[str, str]:
    """`--set STEP_ID.FIELD=VALUE` (or a top-level `FIELD.SUB=VALUE`); values are YAML.
    Returns the recipe location each override wrote (as `_dotted` names it) -> its text."""
    sections = set(recipe_model().model_fields)
    written: dict[str, str] = {}
    for text in overrides:
        where = f"{file} (--set {text!r})"
        try:
            override = parse_override(text, "STEP.FIELD=VALUE")
            head = override.path[0]
            if len(override.path) == 1 and head not in sections:
                raise OverrideError(f"expected STEP.FIELD=VALUE or a top-level field ({', '.join(sorted(sections))})")
            step = _find_step(data, head) if len(override.path) > 1 else None
            if head == "sources" and len(override.path) > 2:  # sources.NAME.FIELD=VALUE
                source = _find_source(data, override.path[1])
                if source is None:
                    raise OverrideError(f"no source named {override.path[1]!r}")
                set_path(source, override, override.path[2:])
                index = next(i for i, s in enumerate(data["sources"]) if s is source)
                written[".".join([f"sources[{index}]", *override.path[2:]])] = text
            elif step is not None:
                set_path(step, override, override.path[1:])
                index = next(i for i, s in enumerate(data["steps"]) if s is step)
                written[".".join([f"steps[{index}]", *override.path[1:]])] = text
            elif head in sections:
                set_path(data, override)
                written[".".join(override.path)] = text
            else:
                steps = [s.get("id", s.get("op")) for s in data.get("steps") or [] if isinstance(s, dict)]
                raise OverrideError(f"no step {head!r} in the recipe (steps: {', '.join(map(str, steps)) or 'none'}; "
                                    f"sections: {', '.join(sorted(sections))})")
        except OverrideError as error:
            raise RecipeError([Problem(where, 0, str(error).removeprefix(f"{text!r}: "),
                                       "write --set STEP_ID.FIELD=VALUE (VALUE in YAML) with a step id or "
                                       "section of this recipe")]) from None
    return written


def _find_source(data: dict, name: str) -> dict | None:
    for source in data.get("sources") or []:
        if isinstance(source, dict) and source.get("name") == name:
            return source
    return None


def _find_step(data: dict, step_id: str) -> dict | None:
    for step in data.get("steps") or []:
        if isinstance(step, dict) and step.get("id", step.get("op")) == step_id:
            return step
    return None


def _build_steps(model: RecipeSections, lines: _LineIndex, file: str) -> list[Step]:
    operators = registry()
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for index, step_model in enumerate(model.steps):
        cls = operators[step_model.op]
        config = step_model.model_dump(exclude=set(STEP_KEYS))
        step_id = step_model.id or step_model.op
        if step_id in seen:
            if step_model.id:
                raise RecipeError([Problem(file, lines.line(("steps", index, "id")), f"duplicate step id {step_id!r}")])
            seen[step_id] += 1
            step_id = f"{step_id}_{seen[step_id]}"
        seen.setdefault(step_id, 1)
        steps.append(
            Step(
                id=step_id,
                op=step_model.op,
                operator=cls(cls.Config.model_validate(config)),
                config=config,
                chunk_size=step_model.chunk_size or cls.default_chunk_size,
                line=lines.line(("steps", index)),
            )
        )
    return steps


def makes_traces(step: Step) -> bool:
    """Whether the step turns problems into traces (generate, adaptive_generate)."""
    return "trace_id" in step.operator.output_columns()


def _check_columns(steps: list[Step], sources: list[Source], lines: _LineIndex, file: str) -> set[str]:
    """Every step's input columns exist; returns the output's columns. Trace sources make
    trace rows: they are the frame from the start, or join the problem sources' traces
    after the step that generates them."""
    trace_columns = {c.name for c in TRACE_COLUMNS + IMPORT_COLUMNS}
    importing = any(source.kind == "traces" for source in sources)
    problem_sources = [source.name for source in sources if source.kind == "problems"]
    generating = any(makes_traces(step) for step in steps)
    if importing and problem_sources and not generating:
        index = next(i for i, source in enumerate(sources) if source.kind == "problems")
        raise RecipeError([Problem(file, lines.line(("sources", index)), (
            f"problem source(s) {', '.join(problem_sources)} next to trace sources need a step that generates "
            "traces (generate, adaptive_generate); without one, use trace sources only"))])
    available = trace_columns if importing and not generating else {c.name for c in PROBLEM_COLUMNS}
    for step in steps:
        missing = step.operator.input_columns() - available
        if missing:
            raise RecipeError(
                [
                    Problem(
                        file,
                        step.line,
                        f"step {step.id!r} needs column(s) {', '.join(sorted(missing))}, which no "
                        f"earlier step produces (available: {', '.join(sorted(available))})",
                    )
                ]
            )
        available = (available | step.operator.output_columns()) - {"reject_reason", "reject_detail"}
        if importing and makes_traces(step):
            available |= trace_columns
    return available


def _check_publish(publish: PublishConfig, produced: set[str], lines: _LineIndex, file: str) -> None:
    """The `messages` column needs traces: found now rather than after the whole run."""
    if not publish.messages:
        return
    if "completion" in produced or {"reasoning", "answer_text"} <= produced:
        return
    raise RecipeError([Problem(
        file, lines.line(("publish",)),
        "publish: the steps make no traces (no 'completion', nor 'reasoning' + 'answer_text') for the "
        "assistant turn of `messages`; add a generate step, or set publish.messages: false")])


def _check_names(model: RecipeSections, lines: _LineIndex, file: str) -> None:
    """Names that become paths are one safe path part; Hub ids are owner/name; the output
    directory is not empty text (that would be the folder the command runs in)."""
    problems = []
    if not SAFE_NAME.match(model.name):
        problems.append(Problem(file, lines.line(("name",)), f"name: {model.name!r} is not a safe name (it becomes "
                                "the folder runs/{name})", "use letters, digits, '.', '_' or '-' (at most 100)"))
    for index, step in enumerate(model.steps):
        if step.id is not None and not SAFE_NAME.match(step.id):
            problems.append(Problem(file, lines.line(("steps", index, "id")), f"steps[{index}].id: {step.id!r} is not "
                                    "a safe name (it becomes a folder name)",
                                    "use letters, digits, '.', '_' or '-' (at most 100)"))
    if not model.output.dir.strip():
        problems.append(Problem(file, lines.line(("output", "dir")), "output.dir is empty",
                                "name a directory, e.g. runs/{name}"))
    for prefix, sources in _source_sections(model):
        for index, source in enumerate(sources):
            if source.hub is not None and (not HUB_DATASET_ID.match(source.hub) or ".." in source.hub):
                where = ".".join(prefix) + f"[{index}]"
                problems.append(Problem(file, lines.line((*prefix, index, "hub")), f"{where}.hub: {source.hub!r} is "
                                        "not a Hub dataset id (owner/name)",
                                        "write hub: OWNER/NAME, or path: for a local file or folder"))
    if problems:
        raise RecipeError(problems)


def _source_sections(model: RecipeSections) -> list[tuple[tuple[str, ...], list[Source]]]:
    """(location prefix, sources) of the recipe's sources and its held-out ones."""
    sections = [(("sources",), model.sources)]
    return sections + [((name, "sources"), getattr(model, name).sources) for name in ("eval", "compare")
                       if getattr(model, name) is not None]


def _check_source_kinds(model: RecipeSections, recipe_dir: Path, lines: _LineIndex, file: str) -> None:
    """Every source path is a regular file or a folder: reading a FIFO, a socket or a device
    (/dev/zero) would wait forever or never end. Checked with stat, which never blocks."""
    from curate.sources.problems import resolve_path

    problems = []
    for prefix, sources in _source_sections(model):
        for index, source in enumerate(sources):
            path = resolve_path(source, recipe_dir)
            try:
                mode = path.stat().st_mode if path is not None else None
            except OSError:  # missing or unreadable: preflight names it
                continue
            if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                where = ".".join(prefix) + f"[{index}]"
                problems.append(Problem(file, lines.line((*prefix, index, "path")),
                                        f"{where} ({source.name}): {path} is {file_kind(mode)}, not a file or "
                                        "folder; reading it could wait forever", "point the source at a file"))
    if problems:
        raise RecipeError(problems)


# Problem files up to this size are read by `validate` as the run reads them; larger ones
# are left to the run (a validate should stay quick).
_READ_AHEAD_BYTES = 64 << 20


def _check_mapped_fields(sources: list[Source], recipe_dir: Path, lines: _LineIndex, file: str) -> None:
    """A source's mapped fields are in its file, as the run requires: a problem file (up to
    _READ_AHEAD_BYTES) is read as the run reads it, a trace file's first record is read."""
    from curate.sources.problems import load_problems, resolve_path

    problems = []
    for index, source in enumerate(sources):
        path = resolve_path(source, recipe_dir)
        if path is None or not path.is_file():  # a Hub dataset, a folder, or missing (preflight names it)
            continue
        if source.kind != "traces":
            if path.stat().st_size <= _READ_AHEAD_BYTES:
                try:
                    load_problems(source, recipe_dir)
                except SourceError as error:
                    problems.append(Problem(file, lines.line(("sources", index, "path")),
                                            f"sources[{index}] ({source.name}): {error}",
                                            "fix the source file, or the source's `fields:` / `format:`"))
            continue
        try:
            present = first_record_fields(source, path)
        except SourceError as error:
            problems.append(Problem(file, lines.line(("sources", index, "path")), f"sources[{index}]: {error}"))
            continue
        if present is None:
            continue
        missing = [f"{name!r} ({role})" for name, role in mapped_fields(source).items() if name not in present]
        if missing:
            problems.append(Problem(file, lines.line(("sources", index)), (
                f"sources[{index}] ({source.name}): mapped field(s) {', '.join(missing)} not in the first record "
                f"of {resolve_path(source, recipe_dir)} (fields: {', '.join(present)})")))
    if problems:
        raise RecipeError(problems)


def _check_configs(steps: list[Step], recipe_dir: Path, file: str) -> None:
    """Each operator's own checks (Operator.check_config): files, models."""
    problems = [Problem(file, step.line, f"step {step.id!r}: {message}")
                for step in steps for message in step.operator.check_config(recipe_dir)]
    if problems:
        raise RecipeError(problems)
