"""Offline vLLM: a whole chunk goes to one `LLM.chat` / `LLM.generate` call.

One call per chunk lets vLLM's scheduler keep the GPU full (small synchronous batches
leave it idle between them). The samples of one prompt are a single request with
`SamplingParams(n=...)`, so the prompt is prefilled once. Written against vLLM's
documented offline API (`vllm.LLM`, `SamplingParams`, `RequestOutput.outputs`).
The chunk's results are cached when the call returns: a crash inside a call loses
that chunk only, so the step's `chunk_size` bounds what a crash can cost.
"""

from __future__ import annotations

from curate.llm.backends.base import (
    Backend,
    Completion,
    GenerationError,
    Request,
    Sink,
    local_model_path,
)
from curate.models.bundled import resolve_model


class VLLMBackend(Backend):
    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise GenerationError(f"teacher {self.teacher.name!r}: backend 'vllm' needs the vllm package (pip install vllm)")
        self._source = resolve_model(self.teacher.model, self.cache_dir)
        local_model_path(self._source, self.teacher.name)
        self._llm = None
        self._tokenizer = None

    def load(self):
        if self._llm is not None:
            return self._llm
        from vllm import LLM

        options = self.options
        engine_args = {"max_model_len": options.max_model_len} if options.max_model_len else {}
        self._llm = LLM(
            model=self._source,
            tensor_parallel_size=options.tensor_parallel_size,
            dtype=options.dtype,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enforce_eager=options.enforce_eager,
            seed=self.teacher.sampling.seed,
            **engine_args,
            **options.engine_args,
        )
        return self._llm

    def generate(self, requests: list[Request], sink: Sink) -> None:
        if not requests or sink.stopped():
            return
        from vllm import SamplingParams

        llm = self.load()
        sampling = self.teacher.sampling
        # Samples of one prompt travel together; the group's seed is its first sample's.
        groups: dict[str, list[Request]] = {}
        for request in requests:
            groups.setdefault(request.text, []).append(request)
        members = list(groups.values())
        params = [
            SamplingParams(
                n=len(group), temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=sampling.max_tokens, stop=sampling.stop or None, seed=group[0].seed,
            )
            for group in members
        ]
        prompts = [group[0].prompt for group in members]
        if self.teacher.prompt.kind == "chat":
            outputs = llm.chat(prompts, sampling_params=params, use_tqdm=False,
                               chat_template_kwargs=self.options.chat_template_kwargs or None)
        else:
            outputs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
        results = []
        for group, output in zip(members, outputs, strict=True):
            prompt_tokens = len(output.prompt_token_ids or [])
            for request, sample in zip(group, output.outputs, strict=True):
                finish = "length" if sample.finish_reason == "length" else "stop"
                results.append((request, Completion(sample.text, finish, prompt_tokens, len(sample.token_ids))))
        sink.done(results)

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        if not texts:
            return []
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.options.engine_args.get("tokenizer", self._source))
        return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def close(self) -> None:
        self._llm = None

