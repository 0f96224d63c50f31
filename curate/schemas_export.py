"""The JSON Schemas in `schemas/`, generated from the code (a test keeps them current)."""

from __future__ import annotations

import json
from pathlib import Path

from curate.core.io import write_text
from curate.recipe import recipe_json_schema
from curate.schema import TABLES, json_schema


def schema_documents() -> dict[str, dict]:
    documents = {f"{table}.schema.json": json_schema(table) for table in TABLES}
    documents["recipe.schema.json"] = recipe_json_schema()
    return documents


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    paths = []
    for name, document in schema_documents().items():
        write_text(render(document), directory / name)
        paths.append(directory / name)
    return paths
