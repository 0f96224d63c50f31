"""YAML from untrusted hands: safe tags only, no duplicate keys, bounded size, depth and aliases.

`yaml.safe_load` already refuses code, but it keeps aliases shared, so a few hundred bytes of
nested aliases (a "billion laughs") turn into gigabytes as soon as anything walks or dumps
the result (pydantic does). Here the composed node graph is measured with aliases expanded,
in time linear in the file, and refused before anything is built from it. PyYAML composes
nodes recursively, so `[[[[...]]]]` 20,000 deep would end in RecursionError: nesting is
counted while composing and refused past MAX_DEPTH.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

MAX_YAML_BYTES = 1 << 20  # a recipe is a page of text; 1 MiB is far beyond any real one
# Cost of the document with every alias expanded: characters of scalars plus one per node.
MAX_EXPANDED_COST = 4 << 20
# Nesting of mappings and lists. A recipe nests about 6 deep; PyYAML recurses about 3 Python
# frames per level, so this stays far below the interpreter's recursion limit.
MAX_DEPTH = 100


class YamlInputError(ValueError):
    """YAML that is malformed, too large, or would expand too far. `line` is 1-based (0: unknown)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Loaded:
    data: Any
    node: yaml.Node | None


class _Loader(yaml.SafeLoader):
    def __init__(self, stream, what: str):
        super().__init__(stream)
        self.what, self.depth = what, 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlInputError(f"{self.what} nests mappings or lists more than {MAX_DEPTH} levels deep",
                                     mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = key_node.value
                    if key in seen:
                        raise YamlInputError(
                            f"duplicate key {key!r} (first at line {seen[key]}); a later one would silently "
                            f"replace it", key_node.start_mark.line + 1)
                    seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, what: str = "YAML") -> Loaded:
    """Parse `text` (a document of at most MAX_YAML_BYTES) into Python data and its node tree."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_YAML_BYTES:
        raise YamlInputError(f"{what} is {size:,} bytes; the limit is {MAX_YAML_BYTES:,}")
    loader = _Loader(text, what)
    try:
        node = loader.get_single_node()
        if node is None:
            return Loaded(None, None)
        _check_expansion(node, what)
        return Loaded(loader.construct_document(node), node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        raise YamlInputError(f"invalid YAML: {_one_line(error)}", mark.line + 1 if mark else 0) from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, what: str) -> None:
    """Refuse a node graph whose alias-expanded cost passes MAX_EXPANDED_COST, or that
    refers to itself. Each distinct node is costed once (memoised), so this is linear."""
    cost: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                total = 1 + sum(cost[id(k)] + cost[id(v)] for k, v in node.value)
            else:
                total = 1 + sum(cost[id(child)] for child in node.value)
            if total > MAX_EXPANDED_COST:
                raise YamlInputError(
                    f"{what} expands to more than {MAX_EXPANDED_COST:,} characters through aliases "
                    f"(`*name`); write the values out instead", node.start_mark.line + 1)
            cost[key] = total
            continue
        if key in cost:
            continue
        if isinstance(node, yaml.ScalarNode):
            cost[key] = 1 + len(node.value)
            continue
        if key in on_path:
            raise YamlInputError(f"{what} has an alias that refers to itself", node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        stack.extend((child, False) for child in children if id(child) not in cost)


def _one_line(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem:
        return f"{context}, {problem}" if context else str(problem)
    return " ".join(str(error).split())
