"""Generation backends behind one interface (`base.Backend`); each imported only when used."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from curate.llm.backends.base import Backend
    from curate.llm.config import TeacherConfig

_BACKENDS = {
    "transformers": ("curate.llm.backends.hf_transformers", "TransformersBackend"),
    "openai": ("curate.llm.backends.openai_http", "OpenAIBackend"),
    "vllm": ("curate.llm.backends.vllm_offline", "VLLMBackend"),
    "llama_cpp": ("curate.llm.backends.llama_cpp", "LlamaCppBackend"),
}


def make_backend(teacher: TeacherConfig, cache_dir: Path) -> Backend:
    module, name = _BACKENDS[teacher.backend]
    return getattr(importlib.import_module(module), name)(teacher, cache_dir)
