"""Third-party operators: a package that declares the `curate.operators` entry point is
installed, and its operator is in the registry and runs in a recipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

PLUGIN_MODULE = '''
import polars as pl

from curate.core.operator import Filter, OperatorConfig, register


class ShortProblemConfig(OperatorConfig):
    min_chars: int = 10


@register
class DropShortProblems(Filter):
    """Reject problems shorter than min_chars characters."""

    name = "plugin_drop_short"
    Config = ShortProblemConfig
    reads = ("problem",)
    reject_reasons = ("too_short_problem",)

    def rejects(self, measures) -> pl.Expr:
        return pl.when(pl.col("problem").str.len_chars() < self.config.min_chars).then(pl.lit("too_short_problem"))
'''


def build_and_install(tmp_path: Path) -> Path:
    """pip-install a tiny plugin package into a target folder; returns the folder."""
    source = tmp_path / "plugin"
    (source / "curate_plugin_demo").mkdir(parents=True)
    (source / "curate_plugin_demo" / "__init__.py").write_text("")
    (source / "curate_plugin_demo" / "operators.py").write_text(PLUGIN_MODULE)
    (source / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "curate-plugin-demo"
        version = "0.1.0"

        [project.entry-points."curate.operators"]
        demo = "curate_plugin_demo.operators"

        [tool.setuptools]
        packages = ["curate_plugin_demo"]
    """))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True)
    return target


def test_installed_plugin_operator_is_registered_and_runs(tmp_path):
    target = build_and_install(tmp_path)
    data = tmp_path / "problems.jsonl"
    data.write_text('{"problem": "2+2?", "answer": "4"}\n{"problem": "What is 12 times 12?", "answer": "144"}\n')
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(textwrap.dedent(f"""
        name: plugin
        sources:
          - name: tiny
            path: {data.name}
        steps:
          - op: plugin_drop_short
            min_chars: 8
        output:
          dir: {tmp_path / 'run'}
    """))
    # A fresh interpreter with the target on its path: what an installed package looks like.
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        from curate.catalogue import registry
        from curate.recipe import load_recipe
        from curate.runner import run_recipe
        from rich.console import Console
        assert "plugin_drop_short" in registry(), sorted(registry())
        result = run_recipe(load_recipe({str(recipe)!r}), console=Console(quiet=True))
        print(result.run_dir)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    output = pl.read_parquet(tmp_path / "run" / "output.parquet")
    rejections = pl.read_parquet(tmp_path / "run" / "rejections.parquet")
    assert output["problem"].to_list() == ["What is 12 times 12?"]
    assert rejections["reject_reason"].to_list() == ["too_short_problem"]


def test_without_the_plugin_its_operator_is_unknown():
    from curate.catalogue import registry

    assert "plugin_drop_short" not in registry()
