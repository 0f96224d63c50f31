"""What can be known about a recipe without running it: models resolvable, sources readable,
output and cache folders writable. `curate validate` runs every check (`reach=True` also asks
the Hub and OpenAI-compatible servers); `curate run` runs the local ones first, so a recipe
that cannot finish fails before any work, and before anything is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from curate.llm.config import TeacherConfig
from curate.models.bundled import _BUNDLED, BUNDLED_PREFIX
from curate.recipe import Problem, Recipe
from curate.sources.problems import resolve_path

# What a run directory holds before its run.json exists: checkpoints (copied in by
# `curate ablate`, or left by a run killed in its first step) and `curate plan`'s side run.
_RUN_FOLDERS = {"steps", "plan"}
_RUN_MARKERS = ("run.json", "run.lock")

# Names `bundled:` accepts: the model packages, plus the static embedding model dedup derives from one.
BUNDLED_NAMES = (*_BUNDLED, "minilm-static")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class Preflight:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why


def check_recipe(recipe: Recipe, output_dir: Path | None = None, cache_dir: Path | None = None,
                 reach: bool = False) -> Preflight:
    """Every check that needs no run; `reach` also contacts the Hub and model servers."""
    from curate.runner import default_cache_dir

    report = Preflight()
    file = str(recipe.path)
    for location, source in _sources(recipe):
        _check_source(report, file, recipe.line(*location, "path"), location, source, recipe.path.parent)
    run_dir = Path(output_dir or recipe.output_dir)
    _check_writable(report, file, recipe.line("output", "dir"), "output.dir", run_dir)
    report.problems += output_dir_problems(recipe, run_dir)
    _check_writable(report, file, recipe.line("cache_dir"), "cache_dir", Path(cache_dir or default_cache_dir(recipe)))
    if recipe.publish is not None:
        _check_writable(report, file, recipe.line("publish", "output_dir"), "publish.output_dir",
                        Path(recipe.publish.output_dir))
    for step in recipe.steps:
        for where, backend, model, options in _models(step.operator.config, f"step {step.id!r}"):
            _check_model(report, file, step.line, where, backend, model, options, reach)
    _check_code_sandbox(report, recipe)
    if recipe.train is not None and recipe.train.student:
        _check_model(report, file, recipe.line("train", "student"), "train.student", "transformers",
                     recipe.train.student, {}, reach)
    return report


def _check_code_sandbox(report: Preflight, recipe: Recipe) -> None:
    """Code rows are run in bubblewrap boxes: a machine that cannot build one fails here, before
    any generation, not at the verify step (a step's own `verify:` counts, as in adaptive_generate)."""
    from curate.answers.check import VerifyConfig
    from curate.answers.sandbox_box import Isolation, IsolationUnavailable, require

    if not any(source.domain == "code" for _, source in _sources(recipe)):
        return
    held_out = [("eval", recipe.line("eval"), recipe.eval)] if recipe.eval is not None else []
    for where, line, config in [*((f"step {s.id!r}", s.line, s.operator.config) for s in recipe.steps), *held_out]:
        verify = config if isinstance(config, VerifyConfig) else getattr(config, "verify", None)
        if isinstance(verify, VerifyConfig) and verify.sandbox == Isolation.BWRAP:
            try:
                require(Isolation.BWRAP)
            except IsolationUnavailable as error:
                report.problems.append(Problem(str(recipe.path), line, f"{where}: code rows need the bubblewrap "
                                               f"sandbox, which this machine cannot give ({error})",
                                               "install it (apt-get install bubblewrap), or set `sandbox: "
                                               "unsafe-no-isolation` in the verify config to run model code "
                                               "unisolated"))
            return


def _sources(recipe: Recipe):
    yield from ((("sources", i), s) for i, s in enumerate(recipe.sources))
    for section in ("eval", "compare"):
        held_out = getattr(recipe, section)
        if held_out is not None:
            yield from (((section, "sources", i), s) for i, s in enumerate(held_out.sources))


def _check_source(report: Preflight, file: str, line: int, location: tuple, source, recipe_dir: Path) -> None:
    where = _where(location)
    path = resolve_path(source, recipe_dir)
    if path is None:
        state = " (offline: it must already be in the local datasets cache)" if _offline() else ""
        report.notes.append(f"{where} ({source.name}): Hub dataset {source.hub!r} is not checked{state}")
        return
    if not path.exists():
        report.problems.append(Problem(file, line, f"{where} ({source.name}): {path} does not exist",
                                       "fix the path (relative paths start at the recipe's folder)"))
    elif not os.access(path, os.R_OK):
        report.problems.append(Problem(file, line, f"{where} ({source.name}): {path} is not readable",
                                       "fix its permissions"))


def output_dir_problems(recipe: Recipe, run_dir: Path) -> list[Problem]:
    """The run directory must not hold the recipe's own sources, nor files of someone
    else: a run writes output.parquet, rejections.parquet and run.json there, replacing
    whatever had those names. It must be new, empty, or a curate run directory."""
    file, line = str(recipe.path), recipe.line("output", "dir")
    where = f"output directory {run_dir}"
    target = _resolved(run_dir)
    problems = []
    for location, source in _sources(recipe):
        path = resolve_path(source, recipe.path.parent)
        if path is None:
            continue
        resolved = _resolved(path)
        if resolved.is_relative_to(target) or target.is_relative_to(resolved):
            inside = f"{path} is inside the {where}" if resolved.is_relative_to(target) else \
                f"the {where} is inside {path}"
            problems.append(Problem(file, recipe.line(*location, "path"),
                                    f"{_where(location)} ({source.name}): {inside}; the run writes there and would "
                                    f"overwrite it", "choose another output directory (-o DIR or output.dir)"))
    if problems or not run_dir.is_dir():
        return problems
    # hidden files (.gitkeep, .DS_Store) are no one's data the run could replace
    entries = sorted(entry.name for entry in run_dir.iterdir() if not entry.name.startswith("."))
    if entries and not any((run_dir / marker).exists() for marker in _RUN_MARKERS) \
            and not set(entries) <= _RUN_FOLDERS:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        problems.append(Problem(file, line, f"the {where} is not empty and is not a curate run directory (no "
                                            f"run.json; it holds {shown}); the run would replace files there",
                                "choose a new or empty output directory (-o DIR or output.dir), or an earlier run's"))
    return problems


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _where(location: tuple) -> str:
    return ".".join(str(p) for p in location[:-1]) + f"[{location[-1]}]"


def _check_writable(report: Preflight, file: str, line: int, where: str, path: Path) -> None:
    """`path` must be a writable folder, or creatable under its nearest existing parent."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = f"{existing} is a file, not a folder" if existing == path else f"{existing} (in {path}) is a file"
        report.problems.append(Problem(file, line, f"{where}: {what}", f"choose another {where}"))
    elif not os.access(existing, os.W_OK | os.X_OK):
        report.problems.append(Problem(file, line, f"{where}: {existing} is not writable",
                                       f"fix its permissions or choose another {where}"))


def _models(config: object, where: str):
    """(where, backend, model, options) for every teacher in a config, and a step's own
    `model` (embedding models of the dedup steps)."""
    if isinstance(config, TeacherConfig):
        yield f"{where} teacher {config.name!r}", config.backend, config.model, config.options
        return
    if isinstance(config, BaseModel):
        for name in type(config).model_fields:
            value = getattr(config, name)
            if name == "model" and isinstance(value, str):
                yield f"{where}.model", "transformers", value, {}
            else:
                yield from _models(value, where)
    elif isinstance(config, list | tuple):
        for item in config:
            yield from _models(item, where)


def _check_model(report: Preflight, file: str, line: int, where: str, backend: str, model: str,
                 options: dict, reach: bool) -> None:
    def problem(what: str, hint: str) -> None:
        report.problems.append(Problem(file, line, f"{where}: {what}", hint))

    if backend == "openai":
        base_url = options.get("base_url") or "http://127.0.0.1:8000/v1"
        if reach:
            _check_server(base_url, problem)
        else:
            report.notes.append(f"{where}: server {base_url} not contacted "
                                f"(`curate validate` without --offline checks that it answers and serves {model!r})")
        return
    if model.startswith(BUNDLED_PREFIX):
        name = model[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_NAMES:
            problem(f"{model!r} is not a bundled model",
                    f"use one of {', '.join(BUNDLED_PREFIX + n for n in BUNDLED_NAMES)}")
        return
    path = Path(model).expanduser()
    if path.exists():
        return
    if not _HUB_ID.match(model) or model.endswith(".gguf"):
        problem(f"model path {model} does not exist", "fix the path, or give a Hub id (owner/name)")
        return
    if _in_hub_cache(model):
        return
    if _offline():
        problem(f"Hub model {model!r} is not in the local Hugging Face cache, and the Hub is off "
                f"({'/'.join(v for v in _OFFLINE_VARIABLES if os.environ.get(v))} is set)",
                "download it first (huggingface-cli download) or unset the offline variable")
    elif reach:
        _check_hub(model, where, problem, report)
    else:
        report.notes.append(f"{where}: Hub model {model!r} is not cached and the Hub was not asked whether it "
                            "exists; the run will download it")


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARIABLES)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots").is_dir()


def _check_hub(repo_id: str, where: str, problem, report: Preflight) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=10)
    except GatedRepoError:
        report.notes.append(f"{where}: Hub model {repo_id!r} is gated: the run needs a token with access")
    except RepositoryNotFoundError:
        problem(f"Hub model {repo_id!r} does not exist (or is private)", "fix the id, or log in to see it")
    except Exception as error:  # noqa: BLE001 - offline, DNS, TLS, timeouts: all mean "could not check"
        report.notes.append(f"{where}: could not reach the Hub to check {repo_id!r} ({type(error).__name__})")


def _check_server(base_url: str, problem) -> None:
    import httpx

    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=5.0)
    except httpx.HTTPError as error:
        problem(f"the OpenAI-compatible server at {base_url} does not answer ({type(error).__name__})",
                "start the server, fix options.base_url, or check the rest with `curate validate --offline`")
