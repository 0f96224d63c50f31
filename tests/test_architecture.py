"""Stages import only core and the shared modules, never each other (issue #15).

Each stage folder (curate/<stage>/) may import curate.core, the shared modules below and
itself; the driver level (catalogue, recipe, runner, cli, evals, audit) may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

CURATE = Path(__file__).resolve().parent.parent / "curate"
STAGES = ("sources", "select", "dedup", "generate", "verify", "grade", "prune", "publish", "review", "train")
SHARED = ("curate.core", "curate.schema", "curate.text", "curate.answers", "curate.models",
          "curate.llm", "curate.passrate",
          # Reading data: one reader per format, also for decontamination eval sets.
          "curate.sources.config", "curate.sources.readers")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every curate import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(CURATE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name != "curate"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "curate":  # `from curate import X`: X is a submodule, or the version
                found += [(node.lineno, f"curate.{alias.name}") for alias in node.names
                          if alias.name != "__version__"]
            else:
                found.append((node.lineno, module))
    return [(line, module) for line, module in found if module == "curate" or module.startswith("curate.")]


def _allowed(module: str, stage: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in (*SHARED, f"curate.{stage}"))


def test_stages_import_only_core_shared_modules_and_themselves():
    offending = []
    for stage in STAGES:
        folder = CURATE / stage
        assert folder.is_dir(), f"stage folder {folder} is missing"
        for path in sorted(folder.rglob("*.py")):
            for line, module in _imports(path):
                if not _allowed(module, stage):
                    offending.append(f"{path.relative_to(CURATE.parent)}:{line}: imports {module}")
    assert not offending, (
        f"{len(offending)} import(s) from a stage into another stage or a driver module (allowed: "
        f"{', '.join(SHARED)} and the stage itself):\n  " + "\n  ".join(offending)
    )
