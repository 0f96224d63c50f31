"""Final-answer extraction from references and traces."""

from __future__ import annotations

import re

_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def last_boxed(text: str | None) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in `text`, braces balanced."""
    if not text:
        return None
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_brace = text.find("{", start)
    if open_brace < 0:
        return None
    depth = 0
    for index in range(open_brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : index].strip()
    return None


def gsm8k_final(text: str | None) -> str | None:
    """The number after GSM8K's '####' marker, without thousands separators."""
    if not text:
        return None
    match = _GSM8K_FINAL.search(text)
    return match.group(1).replace(",", "").strip() if match else None
