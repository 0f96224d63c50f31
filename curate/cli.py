"""The `curate` command. Heavy libraries are imported inside commands, so --help stays fast."""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


class _App(typer.Typer):
    """The one error-handling wrapper: an exception that reaches it becomes one line
    (curate.errors.describe) and exit code 2 (bad input) or 1 (failure); `--debug` re-raises."""

    debug = False

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            if self.debug:
                raise
            from curate.errors import describe

            code, lines = describe(error)
            for line in lines:
                console.print("[red]error[/red] " + escape(line), highlight=False, soft_wrap=True)
            sys.exit(code)


app = _App(add_completion=False, no_args_is_help=True,
           help="Build reasoning-distillation datasets from recipes: curate run recipes/quickstart.yaml")
console = Console(stderr=True)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", envvar="CURATE_DEBUG",
                                        help="On an error, show the traceback instead of one line.")] = False,
) -> None:
    app.debug = debug


class Executor(StrEnum):
    local = "local"  # batch steps in this process
    ray = "ray"  # batch steps on a Ray cluster (local one by default)

out = Console()

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/quickstart.yaml.")]
SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", help="Override a config field: STEP_ID.FIELD=VALUE (VALUE is YAML)."),
]


def _load(recipe_path: Path, overrides: list[str] | None):
    from curate.recipe import load_recipe

    return load_recipe(recipe_path, overrides or [])


def _preflight(loaded, output: Path | None = None, reach: bool = False):
    """Refuse (exit 2, one line per problem) what curate.preflight finds; its notes otherwise."""
    from curate.preflight import check_recipe
    from curate.recipe import RecipeError

    report = check_recipe(loaded, output_dir=output, reach=reach)
    if report.problems:
        raise RecipeError(report.problems)
    return report


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOption = None,
    output: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--output", "-o", help="Run directory; the published dataset goes to OUTPUT/published unless the recipe's "
                               "publish.output_dir says where.")] = None,
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

    run_dir = _folder_option(output, "--output/-o")
    loaded = _load(recipe, set_)
    if run_dir is not None and loaded.publish is not None and "output_dir" not in loaded.publish.model_fields_set:
        loaded = dataclasses.replace(loaded, publish=loaded.publish.model_copy(
            update={"output_dir": run_dir / "published"}))
    _preflight(loaded, run_dir)
    try:
        result = run_recipe(loaded, run_dir, console, make_executor(executor.value, ray_address, workers))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished work is kept; run the same command to resume.")
        raise typer.Exit(130) from None
    _print_summary(result)


def _folder_option(value: str | None, option: str) -> Path | None:
    """A folder given on the command line; empty text is refused (as a path it would be the
    current folder, whose files a run or publish would then write among)."""
    from curate.errors import UserError

    if value is not None and not value.strip():
        raise UserError(option, "is empty", f"give a folder, e.g. {option.split('/')[0]} runs/NAME")
    return Path(value) if value is not None else None


def _print_summary(result) -> None:
    from curate.catalogue import registry

    table = Table(title="run summary", title_justify="left")
    for column in ("step", "status", "rows in", "rows out", "rejected", "time", "tokens"):
        table.add_column(column, justify="right" if column.startswith(("rows", "time", "tok")) else "left")
    for record in result.steps:
        rejected = ", ".join(f"{reason}: {count}" for reason, count in list(record.rejected.items())[:4])
        tokens = int(record.metrics.get("prompt_tokens", 0) + record.metrics.get("completion_tokens", 0))
        table.add_row(record.id, record.status, f"{record.rows_in:,}", f"{record.rows_out:,}", rejected or "-",
                      f"{record.seconds:.1f}s", f"{tokens:,}" if tokens else "-")
    console.print(table)
    operators = registry()
    for record in result.steps:
        line = operators[record.op].summary(record.metrics) if record.op in operators else None
        if line:
            console.print(f"{record.id}: {line}")
    console.print(f"output: [bold]{result.output}[/bold]  ({result.seconds:.1f}s, run dir {result.run_dir})")
    if result.published is not None:
        _print_published(result.published)
    if result.trained is not None:
        trained = result.trained
        console.print(f"student: {trained['steps']} steps, loss {trained['train_loss']:.3f}, "
                      f"{trained['tokens']:,} tokens in {trained['seconds']:.0f}s "
                      f"-> [bold]{trained['model_dir']}[/bold]")
    if result.evaluated is not None:
        from curate.evals.suite import before_after_lines

        overall = result.evaluated["overall"]
        scores = ", ".join(f"{k} {v:.3f}" for k, v in overall.items() if k.startswith("pass@"))
        console.print(f"eval of {result.evaluated['model']}: {scores} on {overall.get('problems')} problems")
        if result.evaluated.get("baseline_model"):
            console.print(f"before ({result.evaluated['baseline_model']}) -> after, per eval set:")
        for line in before_after_lines(result.evaluated):
            console.print(f"  {line}", highlight=False)


def _print_published(published) -> None:
    state = "published" if published.created else "unchanged, already published as"
    console.print(f"dataset: {state} [bold]{published.version}[/bold] ({published.rows:,} rows) at {published.folder}")


@app.command()
def publish(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (with run.json).")],
    to: Annotated[Optional[str], typer.Option("--to", help="Dataset folder (default: the recipe's).")] = None,  # noqa: UP045
    set_: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--set", help="Override a publish field: FIELD=VALUE (VALUE is YAML)."),
    ] = None,
    push: Annotated[bool, typer.Option(help="Also push the version to the Hub (token from HF_TOKEN).")] = False,
) -> None:
    """Publish a run as a new dataset version (same content: no new version)."""
    from pydantic import ValidationError

    from curate.core.overrides import apply_overrides
    from curate.core.rundir import RunDir
    from curate.core.yamlsafe import load_yaml
    from curate.errors import UserError, validation_line
    from curate.publish import PublishConfig, publish_run

    dataset_dir = _folder_option(to, "--to")
    manifest = RunDir(run_dir).read_manifest()
    _refuse_empty_output(run_dir, manifest)
    recipe_text = manifest.recipe.text
    if recipe_text is None:
        raise UserError(f"{run_dir / 'run.json'}", "records no recipe text", "rerun the recipe with this curate")
    fields = dict((load_yaml(recipe_text, "run.json's recipe").data or {}).get("publish") or {})
    apply_overrides(fields, set_ or [])  # an OverrideError names the --set text
    if dataset_dir is not None:
        fields["output_dir"] = str(dataset_dir)
    try:
        config = PublishConfig.model_validate(fields)
    except ValidationError as error:
        raise UserError(f"{run_dir} (publish section with --set)", validation_line(error, "publish"),
                        f"publish fields are: {', '.join(PublishConfig.model_fields)}") from None
    try:
        published = publish_run(run_dir, config)
    except FileExistsError as error:
        raise UserError(str(config.output_dir), str(error), "choose another --to, or remove the folder") from None
    _print_published(published)
    if push:
        _push(published.folder, config.hub_repo_id, config.private, config.hub_branch)


class ExportFormat(StrEnum):
    llama_factory = "llama-factory"  # dataset_info.json + ShareGPT JSONL
    axolotl = "axolotl"  # chat_template JSONL + a config snippet
    openai = "openai"  # fine-tuning JSONL (messages; DPO form for pairs)


@app.command(name="export")
def export_command(
    version_folder: Annotated[Path, typer.Argument(help="A published version folder, e.g. published/quickstart/v1.")],
    format_: Annotated[ExportFormat, typer.Option("--format", help="The trainer to write for.")],
    to: Annotated[Optional[str], typer.Option("--to", help="Export folder (default: DATASET/exports/VERSION/FORMAT).")] = None,  # noqa: UP045,E501
) -> None:
    """Write a published version for another trainer: LLaMA-Factory, axolotl or OpenAI fine-tuning;
    preference pairs too, in each one's preference format."""
    from curate.errors import UserError
    from curate.publish.exports import describe_export, export_version

    folder = _folder_option(to, "--to")
    if not (version_folder / "lineage.json").is_file():
        raise UserError(str(version_folder), "is not a published version (no lineage.json)",
                        "pass a version folder written by `curate publish`, e.g. published/NAME/v1")
    try:
        result = export_version(version_folder, format_.value, folder)
    except FileNotFoundError as error:
        raise UserError(str(version_folder), str(error), "list the versions with `curate versions DIR`") from None
    console.print(describe_export(result), highlight=False, soft_wrap=True)


def _refuse_empty_output(run_dir: Path, manifest) -> None:
    import polars as pl

    from curate.core.rundir import RunDir
    from curate.runner import nothing_to_publish

    output = RunDir(run_dir).output
    try:
        empty = pl.scan_parquet(output).select(pl.len()).collect().item() == 0
    except (OSError, pl.exceptions.PolarsError):  # publish names what is wrong with the file
        return
    if manifest.finished_at and empty:
        raise nothing_to_publish(run_dir, manifest.steps)


@app.command(name="push")
def push_command(
    version_folder: Annotated[Path, typer.Argument(help="A published version folder, e.g. published/quickstart/v1.")],
    repo: Annotated[str, typer.Option(help="Hub dataset repo id, e.g. you/my-dataset.")],
    public: Annotated[bool, typer.Option(help="Create the repo public (default: private).")] = False,
    branch: Annotated[str, typer.Option(help="Branch to commit to; the version is also tagged.")] = "main",
) -> None:
    """Push a published version to the Hugging Face Hub (token from HF_TOKEN)."""
    _push(version_folder, repo, not public, branch)


def _push(folder: Path, repo_id: str | None, private: bool, branch: str) -> None:
    from curate.publish import HubPushError, push_to_hub

    if not repo_id:
        console.print("[red]error[/red] no Hub repo: set publish.hub_repo_id or pass --repo")
        raise typer.Exit(2)
    try:
        pushed = push_to_hub(folder, repo_id, private=private, branch=branch)
    except HubPushError as error:
        console.print(f"[red]error[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if pushed.created:
        console.print(f"pushed {pushed.version} to {pushed.url} (commit {pushed.commit})")
    else:
        console.print(f"nothing uploaded: {pushed.version} is already on {pushed.url} (tag {pushed.version}, "
                      f"commit {pushed.commit})")


@app.command()
def versions(dataset_dir: Annotated[Path, typer.Argument(help="A dataset folder written by publish.")]) -> None:
    """List the published versions of a dataset with row counts and fingerprints."""
    from curate.errors import UserError
    from curate.publish import DamagedVersionError, list_versions

    if not dataset_dir.is_dir():
        raise UserError(str(dataset_dir), "no such folder" if not dataset_dir.exists() else "not a folder",
                        "pass a dataset folder written by `curate publish` (e.g. published/NAME)")
    table = Table()
    frame = list_versions(dataset_dir)
    columns = ("version", "created_at", "rows", "shards", "fingerprint")
    for column in (*columns, "files"):
        table.add_column(column)
    for row in frame.iter_rows(named=True):
        table.add_row(*(str(row[c]) for c in columns), "ok" if row["damaged"] is None else "[red]damaged[/red]")
    out.print(table)
    damaged = frame["damaged"].drop_nulls()
    if damaged.len():
        more = f" (and {damaged.len() - 1} more damaged version(s))" if damaged.len() > 1 else ""
        raise DamagedVersionError(damaged[0] + more)


@app.command()
def diff(
    dataset_dir: Annotated[Path, typer.Argument(help="A dataset folder written by publish.")],
    old: Annotated[str, typer.Argument(help="Older version, e.g. v1.")],
    new: Annotated[str, typer.Argument(help="Newer version, e.g. v2.")],
) -> None:
    """Rows added, removed and changed between two versions (by trace_id), and preference
    pairs (by pair_id) when either version has the `preference` config."""
    from curate.errors import UserError
    from curate.publish import DamagedVersionError, diff_versions
    from curate.publish.versions import PREFERENCE, has_config

    try:
        out.print(diff_versions(dataset_dir, old, new).summary())
        if has_config(dataset_dir, old, PREFERENCE) or has_config(dataset_dir, new, PREFERENCE):
            out.print(diff_versions(dataset_dir, old, new, PREFERENCE).summary())
    except DamagedVersionError:
        raise  # its own hint: restore or republish
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(dataset_dir), str(error), "list the versions with `curate versions DIR`") from None


@app.command()
def plan(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Before spending anything: requests, cached completions and estimated tokens per
    teacher for the first generate step (earlier, cheap steps are run to get its input).
    For adaptive_generate it shows the most the step can request: every problem at its cap."""
    from curate.runner import default_cache_dir, run_recipe

    loaded = _load(recipe, set_)
    planned = [i for i, step in enumerate(loaded.steps) if step.operator.can_plan]
    if not planned:
        out.print(f"{recipe}: no generate step, nothing to plan")
        return
    first = planned[0]
    import polars as pl

    # The steps before generate run in a side folder, so the real run directory is untouched.
    head = dataclasses.replace(loaded, steps=loaded.steps[:first], publish=None, train=None, eval=None)
    frame = pl.read_parquet(run_recipe(head, loaded.output_dir / "plan", console).output)
    step = loaded.steps[first]
    table, bound = step.operator.plan(frame, default_cache_dir(loaded))
    out.print(f"plan for step {step.id!r} on {frame.height:,} problems{bound}:")
    out.print(table)


@app.command(name="train")
def train_command(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Fine-tune a student with the recipe's `train:` section (e.g. --set train.max_steps=10)."""
    from curate.train import train

    loaded = _load(recipe, set_)
    if loaded.train is None or loaded.train.dataset is None:
        console.print("[red]error[/red] the recipe needs `train:` with a `dataset` (or use `curate run`, "
                      "which trains on the version it publishes)")
        raise typer.Exit(2)
    result = train(loaded.train)
    out.print_json(json.dumps(result.to_json()))


@app.command(name="eval")
def eval_command(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Evaluate a model (teacher or student) on the recipe's `eval:` section: pass@k, tokens, truncation."""
    from curate.evals import EvalConfig, evaluate, load_eval_set

    loaded = _load(recipe, set_)
    if loaded.eval is None or loaded.eval.model.model == "student":
        console.print("[red]error[/red] the recipe needs `eval:` with a model path or id "
                      "('student' is resolved only by `curate run`)")
        raise typer.Exit(2)
    problems = load_eval_set(loaded.eval.sources, loaded.path.parent)
    report = evaluate(EvalConfig.model_validate(loaded.eval.model_dump(exclude={"sources"})), problems)
    out.print(report.table())


@app.command()
def compare(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Train one student on two datasets with identical settings, evaluate both, report the
    difference in pass@1 with a confidence interval (the recipe's `compare:` section)."""
    from curate.evals import load_eval_set
    from curate.evals.compare import compare as run_compare

    loaded = _load(recipe, set_)
    if loaded.compare is None:
        console.print("[red]error[/red] the recipe has no `compare:` section")
        raise typer.Exit(2)
    problems = load_eval_set(loaded.compare.sources, loaded.path.parent)
    reports, difference = run_compare(loaded.compare, problems)
    for report in reports.values():
        out.print(report.table())
    out.print(difference)


@app.command()
def ablate(recipe: RecipeArg, set_: SetOption = None) -> None:
    """One student per dataset variant and seed (the recipe's `ablate:` section), all on the
    same held-out problems: a table with intervals, ablate.json and ablate.png. Resumable."""
    from curate.evals.ablate import ablate as run_ablation
    from curate.evals.ablate import markdown_table

    loaded = _load(recipe, set_)
    if loaded.ablate is None:
        from curate.errors import UserError

        raise UserError(str(recipe), "has no `ablate:` section",
                        "add one (dataset variants and seeds; as in recipes/study-cpu.yaml)")
    _preflight(loaded)
    try:
        report = run_ablation(loaded, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished arms are kept; run the same command to resume.")
        raise typer.Exit(130) from None
    out.print(markdown_table(report), markup=False, highlight=False)


class ReviewPick(StrEnum):
    disagree = "disagree"  # verify and the dump's label differ (correct != source_correct)
    judge = "judge"  # the LLM judge said wrong, or differs from verify
    random = "random"  # any trace


@app.command()
def review(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (its traces are sampled, kept or "
                                                  "rejected).")],
    to: Annotated[Path, typer.Option("--to", help="Label Studio tasks file to write (JSON).")],
    pick: Annotated[ReviewPick, typer.Option(help="Which traces to sample.")] = ReviewPick.disagree,
    n: Annotated[int, typer.Option("--n", min=1, help="At most this many traces.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
) -> None:
    """Sample traces for human review in Label Studio (JSON tasks and a labeling config);
    read the verdicts back with a `review_filter` step on the project's JSON export."""
    from curate.audit import Audit
    from curate.errors import UserError
    from curate.review.labelstudio import pick_rows, write_tasks

    try:  # every trace the run made: a disagreement a later filter rejected is still worth a look
        rows = pick_rows(Audit.open(run_dir).rows("all"), pick.value, n, seed)
    except ValueError as error:
        raise UserError(str(run_dir), str(error),
                        "pass a run directory; pick another --pick, or run the steps that add the columns") from None
    config = write_tasks(rows, to)
    console.print(f"{rows.height} traces ({pick.value}) for review: [bold]{to}[/bold]; labeling config: {config}. "
                  "Import both into a Label Studio project, export it as JSON, and add a `review_filter` step "
                  "with `file:` the export.", highlight=False, soft_wrap=True)


@app.command()
def audit(
    path: Annotated[Path, typer.Argument(help="A run directory, or a published dataset (version) folder.")],
    out_file: Annotated[Path, typer.Option("--out", help="The HTML report to write.")] = Path("report.html"),
) -> None:
    """Write a self-contained HTML audit: funnel, teachers, bands, lengths, clusters, leaks, examples."""
    from curate.audit import audit_command

    written = audit_command(path, out_file)
    console.print(f"audit report: [bold]{written}[/bold]")
    _print_label_agreement(path)


def _print_label_agreement(path: Path) -> None:
    """Imported labels against verify, on the terminal too: the check people run most."""
    from curate.audit import Audit

    table = Audit.open(path).label_agreement()
    for row in table.iter_rows(named=True):
        out.print(f"labels vs verify: {row['source']}/{row['teacher']}: {row['agree']}/{row['traces']} agree "
                  f"({row['agreement']:.2%}); label true, verify false: {row['label_true_verify_false']}; "
                  f"label false, verify true: {row['label_false_verify_true']}; undecided: {row['verify_undecided']}")


@app.command()
def validate(
    recipe: RecipeArg,
    set_: SetOption = None,
    offline: Annotated[bool, typer.Option("--offline", help="Contact no server or Hub; the notes say what that "
                                                             "skipped.")] = False,
) -> None:
    """Check a recipe without running it: operators, config fields and types, columns, the
    publish section; sources readable, output and cache folders writable; models resolvable
    (bundled names, local paths, Hub ids, OpenAI-compatible servers; not with --offline)."""
    loaded = _load(recipe, set_)
    for note in _preflight(loaded, reach=not offline).notes:
        console.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    steps = " -> ".join(["load"] + [s.id for s in loaded.steps])
    out.print(f"{recipe}: ok ({len(loaded.sources)} sources; {steps})")


@app.command()
def operators(
    name: Annotated[Optional[str], typer.Argument(help="One operator: its description and config fields.")] = None,  # noqa: UP045,E501
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable listing, with every field.")] = False,
) -> None:
    """List the operators a recipe can name, one line each; `curate operators NAME` for one's fields."""
    import difflib

    from curate.catalogue import registry
    from curate.errors import UserError

    listing = {op: _operator_entry(cls) for op, cls in registry().items()}
    if name is not None:
        if name not in listing:
            close = difflib.get_close_matches(name, listing, n=3)
            raise UserError(f"operator {name!r}", "is not known",
                            f"did you mean {' or '.join(close)}?" if close else "`curate operators` lists them")
        listing = {name: listing[name]}
    if as_json:
        out.print_json(json.dumps(listing))
    elif name is not None:
        _print_operator(name, listing[name])
    else:
        table = Table(box=None, pad_edge=False)
        for column in ("operator", "scope", "what it does"):
            table.add_column(column, no_wrap=column != "what it does")
        for op, entry in listing.items():
            table.add_row(op, entry["scope"], entry["doc"].split(". ")[0].rstrip("."))
        out.print(table, markup=False, highlight=False)
        out.print("details: curate operators NAME (or --json)", highlight=False)


def _operator_entry(cls) -> dict[str, Any]:
    fields = {
        field_name: {
            "type": _type_name(info.annotation),
            "default": None if info.is_required() else repr(info.get_default(call_default_factory=True)),
            "required": info.is_required(),
            "description": info.description or "",
        }
        for field_name, info in cls.Config.model_fields.items()
    }
    return {"doc": " ".join((cls.__doc__ or "").split()), "scope": cls.scope, "fields": fields}


def _print_operator(name: str, entry: dict[str, Any]) -> None:
    out.print(f"{name} ({entry['scope']}): {entry['doc']}", highlight=False, markup=False)
    table = Table(box=None, pad_edge=False)
    for column in ("field", "type", "default", "description"):
        table.add_column(column, overflow="fold")
    for field_name, info in entry["fields"].items():
        table.add_row(field_name, info["type"], "required" if info["required"] else info["default"],
                      info["description"])
    out.print(table, markup=False, highlight=False)


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
