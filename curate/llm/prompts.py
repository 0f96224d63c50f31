"""Prompt templates: `{column}` placeholders filled from a problem row.

Only `{identifier}` is a placeholder, so LaTeX such as `\\boxed{}` needs no escaping;
`{{` and `}}` give literal braces.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curate.llm.config import PromptConfig

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

Prompt = str | list[dict[str, str]]


def template_fields(template: str) -> set[str]:
    return {m.group(1) for m in _TOKEN.finditer(template) if m.group(1)}


def fill(template: str, values: dict[str, Any]) -> str:
    def substitute(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)[0]
        value = values[match.group(1)]
        return "" if value is None else str(value)

    return _TOKEN.sub(substitute, template)


def check_columns(prompt: PromptConfig, columns: list[str], teacher: str) -> None:
    missing = sorted(prompt.fields() - set(columns))
    if missing:
        raise ValueError(
            f"teacher {teacher!r}: prompt template uses column(s) {missing} that the problem table "
            f"lacks (it has: {', '.join(columns)})"
        )


def render(prompt: PromptConfig, row: dict[str, Any]) -> Prompt:
    """Chat messages (list of {role, content}) or completion text for one problem row."""
    if prompt.kind == "completion":
        shots = [fill(prompt.template, example) + example["response"] for example in prompt.examples]
        return prompt.example_separator.join(shots + [fill(prompt.template, row)])
    messages = []
    if prompt.system is not None:
        messages.append({"role": "system", "content": fill(prompt.system, row)})
    for example in prompt.examples:
        messages.append({"role": "user", "content": fill(prompt.template, example)})
        messages.append({"role": "assistant", "content": example["response"]})
    messages.append({"role": "user", "content": fill(prompt.template, row)})
    return messages


def prompt_text(prompt: Prompt) -> str:
    """How a prompt is stored: completion text as is, chat messages as JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
