"""GGUF models on CPU with llama-cpp-python (optional: it builds from source on install).

llama.cpp runs one sequence at a time here, so requests go one by one, each cached as
it finishes; on small CPU models it is still several times faster than transformers.
"""

from __future__ import annotations

from pathlib import Path

from curate.llm.backends.base import Backend, Completion, GenerationError, Request, Sink
from curate.models.bundled import resolve_model


class LlamaCppBackend(Backend):
    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: backend 'llama_cpp' needs llama-cpp-python "
                "(pip install llama-cpp-python)"
            )
        path = Path(resolve_model(self.teacher.model, self.cache_dir)).expanduser()
        if not path.is_file() or path.suffix != ".gguf":
            raise GenerationError(
                f"teacher {self.teacher.name!r}: llama_cpp needs an existing .gguf file, got {self.teacher.model!r}"
            )
        self._path = path
        self._llm = None

    def load(self):
        if self._llm is not None:
            return self._llm
        from llama_cpp import Llama

        options = self.options
        self._llm = Llama(model_path=str(self._path), n_ctx=options.n_ctx, n_threads=options.n_threads,
                          n_threads_batch=options.n_threads,
                          n_gpu_layers=options.n_gpu_layers, seed=self.teacher.sampling.seed, verbose=False)
        return self._llm

    def generate(self, requests: list[Request], sink: Sink) -> None:
        if not requests:
            return
        llm = self.load()
        sampling = self.teacher.sampling
        for request in requests:
            if sink.stopped():
                return
            arguments = dict(max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                             top_k=0, stop=sampling.stop or None, seed=request.seed)
            if isinstance(request.prompt, str):
                response = llm.create_completion(request.prompt, **arguments)
                text = response["choices"][0]["text"]
            else:
                response = llm.create_chat_completion(messages=request.prompt, **arguments)
                text = response["choices"][0]["message"]["content"] or ""
            usage = response["usage"]
            finish = "length" if response["choices"][0]["finish_reason"] == "length" else "stop"
            sink.done([(request, Completion(text, finish, usage["prompt_tokens"], usage["completion_tokens"]))])

    def claim_size(self) -> int | None:
        return 1  # one sequence at a time

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        if not texts:
            return []
        llm = self.load()  # mmap'd GGUF: loads in well under a second
        return [len(llm.tokenize(t.encode(), add_bos=False, special=True)) for t in texts]

    def close(self) -> None:
        self._llm = None
