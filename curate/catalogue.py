"""Every operator a recipe can name: the stages' operator modules, imported here, plus the
operators of installed plugin packages.

A recipe is data, so what it can run is an allow-list: an operator is known when one of
the modules below registers it (`@register`), or when an installed distribution declares
it under the `curate.operators` entry-point group, e.g. in the plugin's pyproject.toml:

    [project.entry-points."curate.operators"]
    my_ops = "my_package.operators"        # a module whose import registers its operators

An entry point may also name one Operator subclass (`"my_package.operators:MyFilter"`),
which is registered for it. Nothing else is ever imported by name from a recipe.
"""

from __future__ import annotations

import sys
from importlib import metadata

import curate.dedup.confirm
import curate.dedup.operators
import curate.generate.operators
import curate.grade.operators
import curate.prune.arithmetic
import curate.prune.filters
import curate.prune.process
import curate.prune.rewrite
import curate.prune.steps
import curate.review.operators
import curate.select.operators
import curate.select.pairs
import curate.verify.operators  # noqa: F401 - imported for their @register side effect
from curate.core.operator import Operator, register, registered

ENTRY_POINT_GROUP = "curate.operators"

_loaded: dict[str, str] = {}  # entry point value -> distribution, loaded once each
_scanned_path: tuple[str, ...] | None = None


class PluginError(ImportError):
    """A package declared a `curate.operators` entry point that does not load."""


def load_plugins() -> list[str]:
    """Import the operators of every installed `curate.operators` entry point (once each;
    rescanned when sys.path changes). Returns the entry point values loaded so far."""
    global _scanned_path
    if _scanned_path == tuple(sys.path):
        return list(_loaded)
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.value in _loaded:
            continue
        distribution = entry_point.dist.name if entry_point.dist is not None else "?"
        try:
            target = entry_point.load()
        except Exception as error:  # a broken plugin names itself instead of failing obscurely
            raise PluginError(f"curate plugin {distribution!r}: entry point {entry_point.name} = "
                              f"{entry_point.value} does not load: {error}") from error
        if isinstance(target, type):
            if not issubclass(target, Operator):
                raise PluginError(f"curate plugin {distribution!r}: {entry_point.value} is not an Operator")
            register(target)
        _loaded[entry_point.value] = distribution
    _scanned_path = tuple(sys.path)
    return list(_loaded)


def registry() -> dict[str, type[Operator]]:
    """Operator name -> class, for every operator a recipe may name."""
    load_plugins()
    return registered()
