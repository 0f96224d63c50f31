"""`FIELD.SUB=VALUE` overrides: the one parser behind `curate run --set`, `curate publish
--set` and `python -m curate.train CONFIG FIELD=VALUE`.

The text before the first `=` is a dotted path, the text after it is read as YAML
(`n=8` is an int, `teachers=[a, b]` a list, `name=null` None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.core.yamlsafe import YamlInputError, load_yaml


class OverrideError(ValueError):
    """An override that is not PATH=VALUE, or whose path runs through a non-mapping."""


@dataclass(frozen=True)
class Override:
    text: str
    path: tuple[str, ...]
    value: Any


def parse_override(text: str, form: str = "FIELD=VALUE") -> Override:
    """`a.b=VALUE` -> Override(path=("a", "b"), value=yaml(VALUE)); `form` names the
    expected shape in the error message."""
    target, separator, raw_value = text.partition("=")
    path = tuple(target.strip().split("."))
    if not separator or not all(path):
        raise OverrideError(f"{text!r}: expected {form}")
    try:
        value = load_yaml(raw_value, "the value").data
    except YamlInputError as error:
        raise OverrideError(f"{text!r}: the value is not usable YAML ({error})") from None
    return Override(text, path, value)


def set_path(mapping: dict, override: Override, path: tuple[str, ...] | None = None) -> None:
    """Set `override.value` at `path` (default: its own path) inside `mapping`, creating
    mappings on the way."""
    *parents, leaf = override.path if path is None else path
    container = mapping
    for key in parents:
        container = container.setdefault(key, {})
        if not isinstance(container, dict):
            raise OverrideError(f"{override.text!r}: {key} is not a mapping")
    container[leaf] = override.value


def apply_overrides(mapping: dict, overrides: list[str], form: str = "FIELD=VALUE") -> dict:
    """Apply each `PATH=VALUE` to `mapping` (in place) and return it."""
    for text in overrides:
        set_path(mapping, parse_override(text, form))
    return mapping
