"""Offline vLLM: a whole chunk goes to one `LLM.chat` / `LLM.generate` call.

One call per chunk lets vLLM's scheduler keep the GPU full (small synchronous batches
leave it idle between them). Every sample is its own request (`n=1`) with its own seed,
`seed_for(seed, sample_index)`: the seed recorded in `generation_params` and in the cache
key is the one that made the text, whichever samples were missing. The samples of one
prompt still share its prefill through vLLM's prefix cache.

Sampling starts from the model's own defaults (its generation_config: top_k, min_p,
repetition_penalty...), as `vllm serve` does for the openai backend, and the teacher's
temperature, top_p, max_tokens and stop override them.

At most one engine lives in the process (`base.claim_gpu`): loading a teacher releases
the engine of the one before (its engine-core process is shut down and the GPU memory
freed), and `close()` releases it for good, before a recipe's `train:` section.

A prompt longer than the context is rejected per row (`generation_error`), not for the
whole chunk; so is a request vLLM's input validation refuses (`refused_request_errors`).
The chunk's results are cached when the call returns: a crash inside a call loses that
chunk only, so the step's `chunk_size` bounds what a crash can cost.

Sample i is the same text whatever else is in its batch only where vLLM's kernels are
batch-invariant: on GPUs, its batch-invariant mode (`VLLM_BATCH_INVARIANT=1`); otherwise a
different batch may change low-order bits of the logits and so, rarely, a sampled token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from curate.llm.backends.base import (
    Backend,
    Completion,
    GenerationError,
    Request,
    Sink,
    claim_gpu,
    free_accelerator_memory,
    local_model_path,
    release_gpu,
)
from curate.models.bundled import resolve_model
from curate.models.gguf import converted_gguf_dir

log = logging.getLogger(__name__)

# Sampling fields a model's generation_config may set that the teacher's sampling does not.
MODEL_DEFAULT_KEYS = ("top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


class VLLMBackend(Backend):
    gpu_exclusive = True  # vLLM takes gpu_memory_utilization of the whole card
    _tokenizer: Any  # a transformers tokenizer, loaded by count_tokens
    _defaults: dict | None

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: backend 'vllm' needs the vllm package (pip install vllm)"
            )
        self._source = resolve_model(self.teacher.model, self.cache_dir)
        local_model_path(self._source, self.teacher.name)
        self._llm = None
        self._tokenizer = None

    def is_loaded(self) -> bool:
        return getattr(self, "_llm", None) is not None

    def load(self):
        if self._llm is not None:
            return self._llm
        from vllm import LLM

        claim_gpu(self)  # releases any other engine first: never two on one GPU
        options = self.options
        engine_args = {"max_model_len": options.max_model_len} if options.max_model_len else {}
        self._llm = LLM(
            model=self._model_folder(),
            tensor_parallel_size=options.tensor_parallel_size,
            dtype=options.dtype,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enforce_eager=options.enforce_eager,
            seed=self.teacher.sampling.seed,
            **engine_args,
            **options.engine_args,
        )
        return self._llm

    def _model_folder(self) -> str:
        """What vLLM loads: a GGUF file dequantized once into safetensors (as the transformers
        backend and training do), so one converted folder serves every backend."""
        if self._source.endswith(".gguf"):
            return str(converted_gguf_dir(Path(self._source), self.cache_dir))
        return self._source

    def _max_model_len(self, llm) -> int | None:
        for holder in (llm, getattr(llm, "llm_engine", None)):
            config = getattr(holder, "model_config", None)
            if config is not None and getattr(config, "max_model_len", None):
                return int(config.max_model_len)
        return self.options.max_model_len

    def _sampling_params(self, llm, request: Request):
        """The model's generation defaults, overridden by the teacher's sampling; n=1."""
        from vllm import SamplingParams

        sampling = self.teacher.sampling
        fields = {"n": 1, "temperature": sampling.temperature, "top_p": sampling.top_p,
                  "max_tokens": sampling.max_tokens, "stop": sampling.stop or None, "seed": request.seed}
        defaults = self._model_defaults(llm)
        return SamplingParams(**{**defaults, **fields})

    def _model_defaults(self, llm) -> dict:
        """What the model's generation_config sets beyond temperature/top_p/max_tokens
        (vLLM's `get_diff_sampling_param`, the same defaults `vllm serve` applies)."""
        defaults = getattr(self, "_defaults", None)
        if defaults is None:
            engine = getattr(llm, "llm_engine", None)
            config = getattr(llm, "model_config", None) or getattr(engine, "model_config", None)
            diff = getattr(config, "get_diff_sampling_param", None)
            found = diff() if callable(diff) else {}
            defaults = {k: v for k, v in (found or {}).items() if k in MODEL_DEFAULT_KEYS and v is not None}
            self._defaults = defaults
            if defaults:
                log.info("teacher %r: the model's generation defaults %s", self.teacher.name, defaults)
        return defaults

    def _prompt_lengths(self, llm, requests: list[Request]) -> list[int] | None:
        """Prompt tokens per request as vLLM will see them (None when no tokenizer is at hand)."""
        try:
            tokenizer = llm.get_tokenizer()
            if self.teacher.prompt.kind == "chat":
                kwargs = self.options.chat_template_kwargs or {}
                return [len(tokenizer.apply_chat_template(r.prompt, add_generation_prompt=True, tokenize=True,
                                                          return_dict=False, **kwargs)) for r in requests]
            return [len(tokenizer.encode(r.prompt)) for r in requests]
        except Exception as error:  # noqa: BLE001 - no usable tokenizer: vLLM's own check decides
            log.info("teacher %r: prompt lengths not checked ahead (%s)", self.teacher.name, error)
            return None

    def generate(self, requests: list[Request], sink: Sink) -> None:
        if not requests or sink.stopped():
            return
        llm = self.load()
        limit = self._max_model_len(llm)
        if limit and self.teacher.sampling.max_tokens >= limit:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: sampling.max_tokens={self.teacher.sampling.max_tokens} does not fit "
                f"the model's context of {limit} tokens (prompt + completion); lower max_tokens")
        lengths = self._prompt_lengths(llm, requests) if limit else None
        fitting = []
        for position, request in enumerate(requests):
            if limit and lengths is not None and lengths[position] >= limit:
                sink.failed(request, f"prompt of {lengths[position]} tokens does not fit max_model_len={limit}")
            else:
                fitting.append(request)
        self._run(llm, fitting, sink)

    def _run(self, llm, requests: list[Request], sink: Sink) -> None:
        """One engine call for `requests`; a request vLLM's input validation refuses is found
        by halving, so it fails alone and the rest still run in large calls."""
        if not requests:
            return
        params = [self._sampling_params(llm, r) for r in requests]
        prompts = [r.prompt for r in requests]
        try:
            if self.teacher.prompt.kind == "chat":
                outputs = llm.chat(prompts, sampling_params=params, use_tqdm=False,
                                   chat_template_kwargs=self.options.chat_template_kwargs or None)
            else:
                outputs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
        except refused_request_errors() as error:  # input validation: nothing ran
            if len(requests) == 1:
                sink.failed(requests[0], f"vLLM refused the request: {error}")
                return
            middle = len(requests) // 2
            self._run(llm, requests[:middle], sink)
            self._run(llm, requests[middle:], sink)
            return
        results = []
        for request, output in zip(requests, outputs, strict=True):
            sample = output.outputs[0]
            if sample.finish_reason == "abort":  # never finished: not a completion to cache
                sink.failed(request, "vLLM aborted the request")
                continue
            finish = "length" if sample.finish_reason == "length" else "stop"
            prompt_tokens = len(output.prompt_token_ids or [])
            results.append((request, Completion(sample.text, finish, prompt_tokens, len(sample.token_ids))))
        sink.done(results)

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        if not texts:
            return []
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = self.options.engine_args.get("tokenizer") or self._model_folder()
            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back (dropping the reference is
        not enough: the engine-core process holds the memory until it is shut down)."""
        llm, self._llm = getattr(self, "_llm", None), None
        self._defaults = None
        release_gpu(self)
        if llm is None:
            return
        shutdown_engine(llm)
        del llm
        free_accelerator_memory(distributed=True)


def shutdown_engine(llm) -> None:
    """Stop a `vllm.LLM`'s engine core (its process, under V1), whatever the vLLM version."""
    shutdown = getattr(llm, "shutdown", None)
    if callable(shutdown):
        shutdown()
        return
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and callable(getattr(core, "shutdown", None)):
        core.shutdown()


def refused_request_errors() -> tuple[type[Exception], ...]:
    """What `LLM.chat`/`generate` raise for a request their input validation refuses before
    anything runs: `vllm.exceptions.VLLMValidationError` (e.g. a prompt longer than the
    context; a VLLMClientError, not a ValueError, from vLLM 0.32) and the plain ValueError
    that older releases, and a few checks still, raise."""
    try:
        from vllm.exceptions import VLLMValidationError
    except ImportError:  # a vLLM before the exceptions module
        return (ValueError,)
    return (VLLMValidationError, ValueError)
