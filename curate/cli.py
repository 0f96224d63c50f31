"""The `curate` command. Heavy libraries are imported inside commands, so --help stays fast."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build reasoning-distillation datasets from recipes: curate run recipes/quickstart.yaml")
console = Console(stderr=True)


class Executor(str, Enum):
    local = "local"  # batch steps in this process
    ray = "ray"  # batch steps on a Ray cluster (local one by default)

out = Console()

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/quickstart.yaml.")]
SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", help="Override a config field: STEP_ID.FIELD=VALUE (VALUE is YAML)."),
]


def _load(recipe_path: Path, overrides: list[str] | None):
    from curate.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe_path, overrides or [])
    except RecipeError as error:
        for problem in error.problems:
            console.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOption = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run directory.")] = None,  # noqa: UP045
    executor: Annotated[Executor, typer.Option(help="Where batch steps run.")] = Executor.local,
    ray_address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Ray cluster to join ('auto', 'ray://host:10001'); default: start a local one."),
    ] = None,
    workers: Annotated[Optional[int], typer.Option(help="Ray actors per batch step.")] = None,  # noqa: UP045
) -> None:
    """Run a recipe; finished steps are reused, an interrupted step resumes."""
    from curate.core.executor import make_executor
    from curate.runner import run_recipe
    from curate.sources.readers import SourceError

    loaded = _load(recipe, set_)
    try:
        result = run_recipe(loaded, output, console, make_executor(executor.value, ray_address, workers))
    except SourceError as error:
        console.print(f"[red]error[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished work is kept; run the same command to resume.")
        raise typer.Exit(130) from None
    _print_summary(result)


def _print_summary(result) -> None:
    table = Table(title="run summary", title_justify="left")
    for column in ("step", "status", "rows in", "rows out", "rejected", "time", "tokens"):
        table.add_column(column, justify="right" if column.startswith(("rows", "time", "tok")) else "left")
    for record in result.steps:
        rejected = ", ".join(f"{reason}: {count}" for reason, count in list(record.rejected.items())[:4])
        tokens = int(record.metrics.get("prompt_tokens", 0) + record.metrics.get("completion_tokens", 0))
        table.add_row(record.id, record.status, f"{record.rows_in:,}", f"{record.rows_out:,}", rejected or "-",
                      f"{record.seconds:.1f}s", f"{tokens:,}" if tokens else "-")
    console.print(table)
    console.print(f"output: [bold]{result.output}[/bold]  ({result.seconds:.1f}s, run dir {result.run_dir})")


@app.command()
def validate(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Check a recipe (operators, config fields and types, columns) without running it."""
    loaded = _load(recipe, set_)
    steps = " -> ".join(["load"] + [s.id for s in loaded.steps])
    out.print(f"{recipe}: ok ({len(loaded.sources)} sources; {steps})")


@app.command()
def operators(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable listing.")] = False,
) -> None:
    """List the operators a recipe can name, with their config fields."""
    from curate.core.operator import registry

    listing = {}
    for name, cls in registry().items():
        fields = {
            field_name: {
                "type": _type_name(info.annotation),
                "default": None if info.is_required() else repr(info.get_default(call_default_factory=True)),
                "required": info.is_required(),
                "description": info.description or "",
            }
            for field_name, info in cls.Config.model_fields.items()
        }
        listing[name] = {"doc": " ".join((cls.__doc__ or "").split()), "scope": cls.scope, "fields": fields}
    if as_json:
        out.print_json(json.dumps(listing))
        return
    for name, entry in listing.items():
        out.print(f"[bold cyan]{name}[/bold cyan] ({entry['scope']}): {entry['doc']}", highlight=False)
        for field_name, info in entry["fields"].items():
            default = "required" if info["required"] else f"default {info['default']}"
            out.print(f"    {field_name}: {info['type']} ({default}) {info['description']}", highlight=False)


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@app.command()
def schema(
    directory: Annotated[Path, typer.Option(help="Where to write the JSON Schemas.")] = Path("schemas"),
) -> None:
    """Write schemas/*.schema.json (tables and recipes) from the code."""
    from curate.schemas_export import write_schemas

    for path in write_schemas(directory):
        out.print(f"wrote {path}")


if __name__ == "__main__":
    app()
