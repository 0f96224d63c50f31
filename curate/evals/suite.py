"""Before/after and transfer: a student and the model it started from, on several eval sets.

A recipe's `eval:` section scores the student on its `sources` (in-distribution) and on
each entry of `sets`: a prompt variant (the same problems under another system prompt or
answer-format instruction) or an out-of-distribution set (other problems). Every set is
also run through the starting model, so each result carries its "before" and a paired
interval on the gain (the response cache makes the starting model's run a one-off cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.core.io import write_json
from curate.evals.compare import paired_difference
from curate.evals.evaluate import EvalConfig, EvalReport, evaluate, load_eval_set
from curate.llm.config import PromptConfig
from curate.schema import DEFAULT_MODE_PROMPTS, ReasoningMode, with_mode_prompt
from curate.sources.config import Source

SetKind = Literal["in_distribution", "prompt_variant", "out_of_distribution"]
MAIN_SET = "heldout"


class EvalSet(BaseModel):
    """One more evaluation set: what it tests, its problems, and the prompt it is asked with."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name used in reports and folder names.")
    kind: SetKind = Field(description="in_distribution, prompt_variant or out_of_distribution.")
    sources: list[Source] | None = Field(
        None, description="Its problems; null reuses the eval section's own sources (a prompt variant)."
    )
    prompt: PromptConfig | None = Field(None, description="The prompt to ask with; null keeps the model's prompt.")
    mode: ReasoningMode | None = Field(
        None, description="Ask in this reasoning mode (long, short, no_think): the mode's text goes in front of the "
        "chat prompt's system message, as publish's mode_prompt writes it. Null asks with the prompt as is.",
    )
    mode_text: str | None = Field(
        None, description="mode: the system text that asks for it; null = curate's default for the mode "
        "(Llama-Nemotron's 'detailed thinking on' / 'detailed thinking off').",
    )

    @model_validator(mode="after")
    def _mode_text_needs_mode(self) -> EvalSet:
        if self.mode_text is not None and self.mode is None:
            raise ValueError("mode_text is the text of a mode: set mode too")
        if self.prompt is not None and self.mode is not None and self.prompt.kind != "chat":
            raise ValueError("mode goes in the system message: it needs a chat prompt (user:, not completion:)")
        return self

    def mode_system_text(self) -> str | None:
        if self.mode is None:
            return None
        return self.mode_text if self.mode_text is not None else DEFAULT_MODE_PROMPTS[self.mode]


@dataclass
class ProblemSet:
    """An eval set with its problems loaded."""

    name: str
    kind: SetKind
    problems: pl.DataFrame
    prompt: PromptConfig | None = None
    mode_text: str | None = None  # the system text of the reasoning mode it asks in


def problem_sets(sources: list[Source], sets: list[EvalSet], recipe_dir: Path) -> list[ProblemSet]:
    """The main held-out set (in-distribution) followed by the recipe's extra sets."""
    main = load_eval_set(sources, recipe_dir)
    loaded = [ProblemSet(name=MAIN_SET, kind="in_distribution", problems=main)]
    names = {MAIN_SET}
    for entry in sets:
        if entry.name in names:
            raise ValueError(f"eval.sets: duplicate set name {entry.name!r}")
        names.add(entry.name)
        problems = main if entry.sources is None else load_eval_set(entry.sources, recipe_dir)
        loaded.append(ProblemSet(name=entry.name, kind=entry.kind, problems=problems, prompt=entry.prompt,
                                 mode_text=entry.mode_system_text()))
    return loaded


def evaluate_model(config: EvalConfig, model: str, problem_set: ProblemSet, output_dir: Path | None) -> EvalReport:
    """`config` with its model path and (for a prompt variant or a mode) prompt replaced, on one set."""
    asked = config.model.model_copy(update={"model": model, "prompt": set_prompt(config.model.prompt, problem_set)})
    return evaluate(config.model_copy(update={"model": asked, "output_dir": output_dir}), problem_set.problems)


def set_prompt(model_prompt: PromptConfig, problem_set: ProblemSet) -> PromptConfig:
    """The prompt a set is asked with: its own or the model's, with its mode's text in front of the system message."""
    prompt = problem_set.prompt or model_prompt
    if problem_set.mode_text is None:
        return prompt
    if prompt.kind != "chat":
        raise ValueError(f"eval set {problem_set.name!r}: mode goes in the system message, but the prompt is a "
                         "completion template (give the set a chat prompt)")
    system = pl.select(with_mode_prompt(pl.lit(prompt.system, pl.String), pl.lit(problem_set.mode_text))).item()
    return prompt.model_copy(update={"system": system})


def before_after(config: EvalConfig, student: str, baseline: str | None, sets: list[ProblemSet],
                 output_dir: Path, confidence: float = 0.95) -> dict:
    """Evaluate `student` (and `baseline`, its starting model) on every set; eval.json holds
    the main set's student report (as before) plus `baseline`, `difference` and `sets`."""
    results: list[dict[str, Any]] = []
    main_report: EvalReport | None = None
    for problem_set in sets:
        after = evaluate_model(config, student, problem_set, output_dir / problem_set.name / "student")
        main_report = main_report or after
        entry: dict[str, Any] = {"name": problem_set.name, "kind": problem_set.kind, "student": after.overall()}
        if baseline is not None:
            before = evaluate_model(config, baseline, problem_set, output_dir / problem_set.name / "baseline")
            entry["baseline"] = before.overall()
            entry["difference"] = _difference(after.traces, before.traces, confidence)
        results.append(entry)
    assert main_report is not None, "problem_sets puts the main set first: sets is never empty"
    summary = main_report.to_json() | {"baseline_model": baseline, "sets": results}
    if baseline is not None:
        summary |= {"baseline": results[0]["baseline"], "difference": results[0]["difference"]}
    write_json(summary, output_dir / "eval.json")
    return summary


def _difference(after: pl.DataFrame, before: pl.DataFrame, confidence: float) -> dict | None:
    try:
        return paired_difference(after, before, ("student", "baseline"), confidence).to_json()
    except ValueError:  # a set of one problem has no paired interval
        return None


def before_after_lines(summary: dict) -> list[str]:
    """One line per set: pass@1 before -> after, the paired gain and its interval."""
    lines = []
    for entry in summary.get("sets", []):
        after = entry["student"]["pass@1"]
        line = f"{entry['name']} ({entry['kind']}, {entry['student']['problems']} problems): pass@1 "
        difference = entry.get("difference")
        if "baseline" in entry:
            line += f"{entry['baseline']['pass@1']:.3f} -> {after:.3f}"
            if difference is not None:
                low, high = difference["interval"]
                line += (f", gain {difference['difference']:+.3f} "
                         f"[{low:+.3f}, {high:+.3f}] ({difference['confidence']:.0%} paired)")
        else:
            line += f"{after:.3f}"
        lines.append(line)
    return lines


def student_card(summary: dict, student_model: str) -> str:
    """The README.md written next to a trained student: what it scored, before and after."""
    rows = ["| set | kind | problems | pass@1 before | pass@1 after | gain [interval] |",
            "|---|---|---:|---:|---:|---|"]
    for entry in summary.get("sets", []):
        before = entry.get("baseline", {}).get("pass@1")
        difference = entry.get("difference")
        gain = (f"{difference['difference']:+.3f} [{difference['interval'][0]:+.3f}, "
                f"{difference['interval'][1]:+.3f}]" if difference else "-")
        rows.append(f"| {entry['name']} | {entry['kind']} | {entry['student']['problems']} | "
                    f"{'-' if before is None else f'{before:.3f}'} | {entry['student']['pass@1']:.3f} | {gain} |")
    return (f"# {Path(student_model).parent.name or 'student'}\n\n"
            f"Fine-tuned from `{summary.get('baseline_model')}` by curate. Evaluation on held-out problems "
            f"(pass@1; \"before\" is the starting model on the same problems, the interval is on the paired "
            f"per-problem difference):\n\n" + "\n".join(rows) + "\n")
