"""GGUF -> safetensors: GGUF files are dequantized once (`GgufConfig(dequantize=True)`)
and saved under `<cache_dir>/models/converted/`, so every later load (generation with
transformers, vLLM, training) is a plain, fast safetensors load of the same folder.

The conversion writes into a `.partial` folder renamed into place when whole, under an
flock on `.<name>.lock`: concurrent runs converting one model wait for the first and
reuse its result, and the kernel drops the lock of a killed process. A `.partial`
folder whose lock nobody holds was left by a killed conversion and is removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _locked(lock: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an flock on `lock`; yields False (without waiting) when not blocking and busy."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                yield False
                return
            log.info("waiting for another process converting the same model (%s)", lock)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing drops the flock


def _lock_file(folder: Path, target_name: str) -> Path:
    return folder / f".{target_name}.lock"


def remove_stale_partials(folder: Path, held: str) -> list[Path]:
    """Remove `.partial` folders of conversions nobody is running (killed ones); this
    process holds the lock of target `held`, so every partial of that target is stale."""
    removed = []
    for partial in sorted(folder.glob(".*.partial")):
        target_name = partial.name[1:].rsplit(".", 2)[0]  # .<target>.<pid>.partial
        if target_name == held:
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
            continue
        with _locked(_lock_file(folder, target_name), blocking=False) as free:
            if free:
                shutil.rmtree(partial, ignore_errors=True)
                removed.append(partial)
    return removed


def convert(gguf: Path, destination: Path) -> None:
    """Dequantize `gguf` into a transformers folder at `destination`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)


def converted_gguf_dir(gguf: Path, cache_dir: Path) -> Path:
    """Safetensors copy of a GGUF model (converted on first use, atomically, once)."""
    target = cache_dir / "models" / "converted" / f"{gguf.stem}-{_gguf_fingerprint(gguf)}"
    if (target / "config.json").is_file():
        return target
    with _locked(_lock_file(target.parent, target.name)):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        for removed in remove_stale_partials(target.parent, target.name):
            log.info("removed %s, left by a killed conversion", removed)
        log.info("converting %s to safetensors in %s (once)", gguf, target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            convert(gguf, partial)
            shutil.rmtree(target, ignore_errors=True)  # an incomplete folder (no config.json)
            os.replace(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target
