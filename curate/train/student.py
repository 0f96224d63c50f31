"""Turning a student name (Hub id, folder, GGUF file, bundled:NAME) into something trainable."""

from __future__ import annotations

from pathlib import Path

from curate.core.paths import default_cache_dir
from curate.models.bundled import resolve_model
from curate.models.gguf import converted_gguf_dir


def resolve_student(student: str, cache_dir: Path | None = None) -> str:
    """A path or Hub id `from_pretrained` can load and train.

    GGUF weights are quantized blocks that cannot take gradients, so a GGUF student is
    dequantized once into the cache as a safetensors folder (`curate.models.gguf`): the
    same folder the transformers generation backend converts to, so training and
    evaluation share it.
    """
    cache_dir = Path(cache_dir or default_cache_dir())
    resolved = resolve_model(student, cache_dir)
    if not resolved.endswith(".gguf"):
        return resolved
    gguf_file = Path(resolved)
    if not gguf_file.is_file():
        raise FileNotFoundError(f"student GGUF file {gguf_file} does not exist")
    return str(converted_gguf_dir(gguf_file, cache_dir))
