"""Local generation with transformers: batched, left-padded, with real stop strings.

Sampling draws each row from its own generator seeded with that request's seed
(`RowSampler`), so a sample's text does not depend on the batch size, the batch order or
which other requests share its batch.

GGUF files are dequantized once into safetensors (`curate.models.gguf`), so every later
load is a plain, fast safetensors load.
"""

from __future__ import annotations

from pathlib import Path

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


class TransformersBackend(Backend):
    def check(self) -> None:
        model = resolve_model(self.teacher.model, self.cache_dir)
        path = local_model_path(model, self.teacher.name)
        if path is not None and path.is_dir() and not (path / "config.json").is_file():
            raise GenerationError(f"teacher {self.teacher.name!r}: {path} has no config.json (not a model folder)")
        self._source = model
        self._loaded = False
        self._tokenizer = None

    def _model_source(self) -> str:
        if self._source.endswith(".gguf"):
            return str(converted_gguf_dir(Path(self._source), self.cache_dir))
        return self._source

    def _load_tokenizer(self):
        """The tokenizer alone: enough to count tokens of cached completions."""
        from transformers import AutoTokenizer

        if self._tokenizer is None:
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self._model_source(), padding_side="left", trust_remote_code=self.options.trust_remote_code
                )
            except OSError as error:
                raise GenerationError(
                    f"teacher {self.teacher.name!r}: cannot load the tokenizer of {self.teacher.model!r}: {error}"
                ) from error
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
        return self._tokenizer

    def load(self) -> None:
        if self._loaded:
            return
        import torch
        from transformers import AutoModelForCausalLM

        options = self.options
        if options.threads:
            torch.set_num_threads(options.threads)
        self.tokenizer = self._load_tokenizer()
        device = options.device if options.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = "auto" if options.dtype == "auto" else getattr(torch, options.dtype)
        if device.startswith("cuda"):
            claim_gpu(self)  # a vLLM engine on the GPU is released first
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                self._model_source(), dtype=dtype, trust_remote_code=options.trust_remote_code
            ).to(device)
        except OSError as error:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: cannot load model {self.teacher.model!r}: {error}"
            ) from error
        self.model.eval()
        if self.teacher.prompt.kind == "chat" and not self.tokenizer.chat_template:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: model {self.teacher.model!r} has no chat template; "
                "use a 'completion' prompt for base models"
            )
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.device = device
        self._loaded = True

    def encode_prompts(self, prompts: list) -> list[str]:
        if self.teacher.prompt.kind == "chat":
            return [self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        return list(prompts)

    def generate(self, requests: list[Request], sink: Sink) -> None:
        if not requests:
            return
        self.load()
        texts = self.encode_prompts([r.prompt for r in requests])
        # Similar lengths together: less padding, and a stable order whatever the input order.
        lengths = [len(t) for t in texts]
        order = sorted(range(len(requests)), key=lambda i: (lengths[i], requests[i].key))
        batch_size = self.options.batch_size
        for start in range(0, len(order), batch_size):
            if sink.stopped():
                return
            batch = order[start:start + batch_size]
            sink.done(self.generate_batch([texts[i] for i in batch], [requests[i] for i in batch]))

    def claim_size(self) -> int | None:
        return self.options.batch_size

    def generate_batch(self, texts: list[str], requests: list[Request]) -> list[tuple[Request, Completion]]:
        import torch

        sampling = self.teacher.sampling
        # Chat templates write their own BOS; plain prompts need the tokenizer's.
        encoded = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=self.teacher.prompt.kind == "completion"
        ).to(self.device)
        from transformers import LogitsProcessorList

        # The row sampler picks every token itself (all other logits -inf), so generate's own
        # step is a plain argmax: no global RNG is consumed, nothing depends on the batch.
        processors = LogitsProcessorList()
        if sampling.temperature > 0:
            processors.append(RowSampler([r.seed for r in requests], sampling.temperature, sampling.top_p, self.device))
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=sampling.max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                logits_processor=processors,
                stop_strings=sampling.stop or None,
                tokenizer=self.tokenizer if sampling.stop else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_length = encoded["input_ids"].shape[1]
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        results = []
        for row, request in enumerate(requests):
            generated = output[row, prompt_length:].tolist()
            used, hit_eos = self._used_length(generated)
            text = self.tokenizer.decode(generated[:used], skip_special_tokens=True)
            text, hit_stop = cut_at_stop(text, sampling.stop)
            finish = "stop" if hit_eos or hit_stop else "length"
            results.append((request, Completion(text, finish, int(prompt_tokens[row]), used)))
        return results

    def _used_length(self, generated: list[int]) -> tuple[int, bool]:
        """Tokens the model produced before padding, and whether it ended with EOS."""
        pad = self.tokenizer.pad_token_id
        for position, token in enumerate(generated):
            if token in self.eos_ids:
                return position + 1, True
            if token == pad:
                return position, False
        return len(generated), False

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        if not texts:
            return []
        return [len(ids) for ids in self._load_tokenizer()(texts, add_special_tokens=False)["input_ids"]]

    def is_loaded(self) -> bool:
        return getattr(self, "_loaded", False)

    def close(self) -> None:
        model = self.__dict__.pop("model", None)
        self._loaded = False
        release_gpu(self)
        if model is not None and str(getattr(self, "device", "cpu")).startswith("cuda"):
            del model
            free_accelerator_memory()


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop string (OpenAI convention: the stop string is dropped)."""
    positions = [text.find(s) for s in stop if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


class RowSampler:
    """A transformers logits processor that samples each row from its own seeded
    generator (temperature, then nucleus top_p) and returns logits that make the chosen
    token the argmax. Row i's t-th token uses the t-th draw of generator i, whatever the
    other rows are: one uniform per row and step, inverted through the row's sorted CDF.

    Sorting the whole vocabulary each step cost ~2.4 s per step for 30 rows of Gemma 3's
    262k tokens on one core, most of the quickstart's generation time. The nucleus almost
    always lies in the top few hundred tokens, so a row is settled from its top
    `CANDIDATES` tokens when that gives the very token the full sort would: the nucleus
    ends inside them, and no token inside it ties with one outside (a tie is the one case
    where the candidates' order could differ from the full sort's). Other rows, and every
    row when top_p is 1 (the draw may land anywhere), take the full sort."""

    CANDIDATES = 1024

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: str):
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p, self.device = temperature, top_p, device

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        draws = torch.stack([torch.rand((), generator=g, device=self.device) for g in self.generators])
        chosen = torch.empty((len(draws), 1), dtype=torch.long, device=scores.device)
        full = torch.ones(len(draws), dtype=torch.bool, device=scores.device)
        if self.top_p < 1 and probs.shape[1] > self.CANDIDATES:
            top, index = torch.topk(probs, self.CANDIDATES, dim=-1)
            # the full sort's order among the candidates: by probability, ties by token id
            index, by_id = index.sort(dim=-1)
            top = top.gather(1, by_id)
            top, order = top.sort(dim=-1, descending=True, stable=True)
            picked, settled = self._pick(top, index.gather(1, order), draws)
            chosen[settled], full = picked[settled], ~settled
        if full.any():
            rows = full.nonzero().squeeze(1)
            # stable: equal probabilities keep vocabulary order, so a row sorts the same in any batch
            sorted_probs, order = torch.sort(probs[rows], dim=-1, descending=True, stable=True)
            chosen[rows] = self._pick(sorted_probs, order, draws[rows])[0]
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen, 0.0)

    def _pick(self, sorted_probs, order, draws):
        """(token per row, whether the candidates settle it): the draw inverted through the
        nucleus of probabilities sorted in descending order (tokens `order`)."""
        import torch

        before = sorted_probs.cumsum(-1) - sorted_probs
        kept = before < self.top_p if self.top_p < 1 else torch.ones_like(sorted_probs, dtype=torch.bool)
        kept[:, 0] = True  # drop a token once the mass before it reaches top_p; the first always stays
        cdf = sorted_probs.masked_fill(~kept, 0.0).cumsum(-1)
        position = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(1), right=True)
        chosen = order.gather(1, position.clamp_(max=cdf.shape[1] - 1))
        smallest_kept = sorted_probs.masked_fill(~kept, float("inf")).min(-1).values
        settled = ~kept[:, -1] & (smallest_kept > sorted_probs[:, -1])
        return chosen, settled
