"""The one small interface every generation backend implements."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from curate.llm.config import TeacherConfig
    from curate.llm.prompts import Prompt


class GenerationError(RuntimeError):
    """A failure that stops the step (bad model, unreachable server, retries exhausted)."""


@dataclass(frozen=True)
class Request:
    key: str  # response-cache key
    prompt: Prompt  # chat messages or completion text
    text: str  # the prompt as stored (JSON for chat)
    sample_index: int
    seed: int  # this sample's own seed


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    reasoning_content: str | None = None  # when the server split the reasoning off itself
    reasoning_tokens: int | None = None  # when the server reported it


class Sink(Protocol):
    """Where a backend delivers results, as soon as each is available."""

    def done(self, results: list[tuple[Request, Completion]]) -> None: ...

    def failed(self, request: Request, message: str) -> None:
        """A request the server refused for itself (e.g. 400 prompt too long): the row is rejected."""

    def stopped(self) -> bool:
        """True once the budget is spent: start no new request."""

    def retried(self) -> None:
        """A request is being retried (counted in the step's metrics)."""


class Backend:
    """Generates completions for requests. `check` runs before any request is sent and
    must raise a clear error for a bad model, server or key; heavy loading happens
    lazily in `generate`, so a fully cached step never loads the model."""

    def __init__(self, teacher: TeacherConfig, cache_dir: Path):
        self.teacher = teacher
        self.options = teacher.backend_options()
        self.cache_dir = cache_dir

    def check(self) -> None:
        raise NotImplementedError

    # True: this backend's engine must be alone on the GPU (vLLM reserves a share of the
    # whole card), so loading it releases every other GPU engine in the process first.
    gpu_exclusive = False

    def load(self) -> None:
        """Load the model now (idempotent); `generate` calls it when needed."""

    def is_loaded(self) -> bool:
        """Whether the model is in memory now (the operator runs loaded teachers first)."""
        return False

    def generate(self, requests: list[Request], sink: Sink) -> None:
        raise NotImplementedError

    def claim_size(self) -> int | None:
        """How many requests to claim in the shared cache before each `generate` call
        (one batch); None: all at once (servers and vLLM want every request in flight)."""
        return None

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        """Exact token counts when this backend has a tokenizer at hand, else None."""
        return None

    def close(self) -> None:
        """Free the model / connections (GPU memory included); `load` may follow again."""


# The backends holding a model on a GPU in this process, in loading order.
_gpu_holders: list[Backend] = []


def claim_gpu(backend: Backend) -> None:
    """Call before loading `backend`'s model onto a GPU: closes the engines it cannot share
    the GPU with (every other one when either side is exclusive), so at most one vLLM
    engine, or one vLLM engine and nothing else, is alive at a time."""
    for holder in list(_gpu_holders):
        if holder is not backend and (backend.gpu_exclusive or holder.gpu_exclusive):
            holder.close()  # calls release_gpu(holder)
            if holder in _gpu_holders:
                _gpu_holders.remove(holder)
    if backend not in _gpu_holders:
        _gpu_holders.append(backend)


def release_gpu(backend: Backend) -> None:
    if backend in _gpu_holders:
        _gpu_holders.remove(backend)


def free_accelerator_memory(distributed: bool = False) -> None:
    """Give freed GPU memory back: garbage-collect, tear vLLM's process groups down
    (`distributed`), empty torch's CUDA cache. Cheap and safe without a GPU."""
    import gc
    import sys

    if distributed and "vllm" in sys.modules:
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception:  # noqa: BLE001 - older/newer vLLM without it: gc + empty_cache below
            pass
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def seed_for(seed: int, sample_index: int) -> int:
    """Per-sample seed: distinct for every (seed, index) pair, stable across runs."""
    digest = hashlib.sha256(f"{seed}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def local_model_path(model: str, teacher: str) -> Path | None:
    """The model as a local path, None for a Hub id; a path-like name that does not
    exist is an error here, not a confusing Hub lookup later."""
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve()
    looks_like_path = model.startswith(("/", ".", "~")) or model.endswith(".gguf") or model.count("/") > 1
    if looks_like_path:
        raise GenerationError(f"teacher {teacher!r}: model path {model!r} does not exist")
    return None
