"""GGUF -> safetensors: GGUF files are dequantized once (`GgufConfig(dequantize=True)`)
and saved under `<cache_dir>/models/converted/`, so every later load (generation with
transformers, vLLM, training) is a plain, fast safetensors load of the same folder."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def _gguf_fingerprint(path: Path) -> str:
    """Size plus the first and last MiB: tells files apart without hashing gigabytes."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(path.stat().st_size - (1 << 20), 0))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def converted_gguf_dir(gguf: Path, cache_dir: Path) -> Path:
    """Safetensors copy of a GGUF model (converted on first use, atomically)."""
    target = cache_dir / "models" / "converted" / f"{gguf.stem}-{_gguf_fingerprint(gguf)}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting %s to safetensors in %s (once)", gguf, target)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, target)
    except OSError:
        if (target / "config.json").is_file():  # another process won the race
            return target
        raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
