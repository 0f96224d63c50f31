"""Recipes: load a YAML file into typed models, or fail with errors that name file and line.

A recipe is data, never code: it is read with `yaml.safe_load`, operators are looked up in
the registry's allow-list, and everything is validated (operator names, config fields and
types, the columns each step needs) before any step runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from curate.catalogue import registry
from curate.core.operator import Operator
from curate.core.overrides import OverrideError, parse_override, set_path
from curate.evals.compare import CompareConfig
from curate.evals.evaluate import EvalConfig
from curate.publish.config import PublishConfig
from curate.schema import PROBLEM_COLUMNS
from curate.sources.config import Source, StrictModel
from curate.train.config import TrainConfig

STEP_KEYS = ("op", "id", "chunk_size")


class Output(StrictModel):
    dir: str = Field("runs/{name}", description="Run directory; {name} is the recipe name.")


class EvalSection(EvalConfig):
    """The recipe's `eval:` section: evaluate a model (`model.model: student` is the one this
    recipe trained) on held-out problems, verified like teachers are."""

    sources: list[Source] = Field(min_length=1, description="Held-out problems (same form as the recipe's sources).")


class CompareSection(CompareConfig):
    """The recipe's `compare:` section: two datasets, one student, the same held-out problems."""

    sources: list[Source] = Field(min_length=1, description="Held-out problems both students are evaluated on.")


class StepBase(StrictModel):
    op: str
    id: str | None = Field(None, description="Step id (default: the operator name).")
    chunk_size: int | None = Field(None, ge=1, description="Rows per chunk for batch operators.")


def step_models() -> dict[str, type[BaseModel]]:
    """One model per operator: `op` + `id` + `chunk_size` + the operator's config fields."""
    models = {}
    for name, operator in registry().items():
        models[name] = create_model(
            f"Step_{name}",
            __base__=operator.Config,
            op=(Literal[name], ...),
            id=(str | None, Field(None, description="Step id (default: the operator name).")),
            chunk_size=(int | None, Field(None, ge=1, description="Rows per chunk (batch operators).")),
        )
    return models


def recipe_model() -> type[BaseModel]:
    steps = list(step_models().values())
    step_union = Annotated[Union[tuple(steps)], Field(discriminator="op")]  # noqa: UP007
    return create_model(
        "Recipe",
        __base__=StrictModel,
        name=(str, Field(description="Recipe name.")),
        version=(str, Field("0.1.0", description="Recipe version.")),
        description=(str, Field("", description="What the recipe makes.")),
        sources=(list[Source], Field(min_length=1)),
        steps=(list[step_union], Field(default_factory=list)),
        output=(Output, Field(default_factory=Output)),
        cache_dir=(str | None, Field(None, description="Shared cache (generations, embeddings).")),
        publish=(PublishConfig | None, Field(None, description="Publish the output as a versioned dataset.")),
        train=(TrainConfig | None, Field(None, description="Fine-tune a student on the published dataset.")),
        eval=(EvalSection | None, Field(None, description="Evaluate a model (e.g. the student) on held-out problems.")),
        compare=(CompareSection | None, Field(None, description="`curate compare`: two datasets, one student.")),
    )


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
    overrides: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RecipeError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError([Problem(file, 0, f"cannot read recipe: {error}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line = error.problem_mark.line + 1 if getattr(error, "problem_mark", None) else 0
        raise RecipeError([Problem(file, line, f"invalid YAML: {error}")]) from None
    if not isinstance(data, dict):
        raise RecipeError([Problem(file, 1, "a recipe is a mapping with name, sources and steps")])
    lines = _LineIndex(node)
    _apply_overrides(data, overrides, file)
    _check_operator_names(data, lines, file)
    try:
        model = recipe_model().model_validate(data)
    except ValidationError as error:
        raise RecipeError(
            [Problem(file, lines.line(e["loc"]), f"{_dotted(e['loc'], data)}: {e['msg']}") for e in error.errors()]
        ) from None
    steps = _build_steps(model, lines, file)
    _check_columns(steps, file)
    _check_configs(steps, path.parent, file)
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
        overrides=list(overrides),
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
                    f"steps[{index}].op: unknown operator {step['op']!r} (known: {', '.join(known)})",
                )
            )
    if problems:
        raise RecipeError(problems)


def _apply_overrides(data: dict, overrides: list[str], file: str) -> None:
    """`--set STEP_ID.FIELD=VALUE` (or a top-level `FIELD.SUB=VALUE`); values are YAML."""
    for text in overrides:
        try:
            override = parse_override(text, "STEP.FIELD=VALUE")
            if len(override.path) == 1 and override.path[0] not in data:
                raise OverrideError(f"{text!r}: expected STEP.FIELD=VALUE")
            step = _find_step(data, override.path[0]) if len(override.path) > 1 else None
            if step is not None:
                set_path(step, override, override.path[1:])
            else:
                set_path(data, override)
        except OverrideError as error:
            raise RecipeError([Problem(file, 0, f"--set {error}")]) from None


def _find_step(data: dict, step_id: str) -> dict | None:
    for step in data.get("steps") or []:
        if isinstance(step, dict) and step.get("id", step.get("op")) == step_id:
            return step
    return None


def _build_steps(model: BaseModel, lines: _LineIndex, file: str) -> list[Step]:
    operators = registry()
    steps, seen = [], {}
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


def _check_columns(steps: list[Step], file: str) -> None:
    available = {c.name for c in PROBLEM_COLUMNS}
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


def _check_configs(steps: list[Step], recipe_dir: Path, file: str) -> None:
    """Each operator's own checks (Operator.check_config): files, models."""
    problems = [Problem(file, step.line, f"step {step.id!r}: {message}")
                for step in steps for message in step.operator.check_config(recipe_dir)]
    if problems:
        raise RecipeError(problems)
