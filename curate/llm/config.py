"""Teachers as recipes configure them: model, backend, prompts, sampling, budgets (used by
`generate`, `adaptive_generate`, `rewrite_traces` and evals).

Everything here is cheap to import (pydantic only): `curate operators` and `curate plan`
read it without loading torch, httpx or vllm.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.core.operator import OperatorConfig
from curate.llm.prompts import template_fields


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptConfig(_Strict):
    """Chat (`user`, optional `system`) or plain completion (`completion`) template.

    Templates substitute `{column}` with the problem row's value; write `{{`/`}}` for
    literal braces. Other braces (`\\boxed{}`) are left alone.
    """

    system: str | None = Field(None, description="Chat: system message template.")
    user: str | None = Field(None, description="Chat: user message template, e.g. '{problem}'.")
    completion: str | None = Field(
        None, description="Base models: plain-text template, e.g. 'Question: {problem}\\nAnswer:'."
    )
    examples: list[dict[str, str]] = Field(
        default_factory=list,
        description="Few-shot examples: each gives the template's columns plus 'response'. "
        "Completion prompts prepend them as text, chat prompts as user/assistant turns.",
    )
    example_separator: str = Field("\n\n", description="Completion prompts: text between few-shot examples.")

    @model_validator(mode="after")
    def _one_kind(self) -> PromptConfig:
        if (self.user is None) == (self.completion is None):
            raise ValueError("prompt needs exactly one of 'user' (chat) or 'completion' (base model)")
        if self.system is not None and self.completion is not None:
            raise ValueError("'system' applies to chat prompts; put it in the 'completion' text instead")
        needed = template_fields(self.template) | {"response"}
        for number, example in enumerate(self.examples):
            missing = needed - set(example)
            if missing:
                raise ValueError(f"prompt.examples[{number}] lacks {sorted(missing)}")
        return self

    @property
    def kind(self) -> Literal["chat", "completion"]:
        return "chat" if self.user is not None else "completion"

    @property
    def template(self) -> str:
        """The user template (chat) or the completion template, whichever the prompt has."""
        template = self.user if self.user is not None else self.completion
        assert template is not None, "the validator requires user or completion"
        return template

    def fields(self) -> set[str]:
        """Problem-table columns the templates use."""
        names: set[str] = set()
        for template in (self.system, self.user, self.completion):
            if template is not None:
                names |= template_fields(template)
        return names


class SamplingConfig(_Strict):
    temperature: float = Field(0.7, ge=0, le=2, description="0 = greedy (then n must be 1); at most 2.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(1024, ge=1, description="Most new tokens per completion.")
    n: int = Field(1, ge=1, description="Samples per problem.")
    seed: int = Field(0, description="Base seed; sample i uses a seed derived from (seed, i).")
    stop: list[str] = Field(default_factory=list, description="Stop strings (cut from the output).")

    @model_validator(mode="after")
    def _greedy_is_one_sample(self) -> SamplingConfig:
        if self.temperature == 0 and self.n > 1:
            raise ValueError(f"temperature 0 (greedy) gives {self.n} identical samples: "
                             "sampling.n must be 1, or the temperature above 0 (e.g. 0.6)")
        return self


class ReasoningConfig(_Strict):
    start: str = Field("<think>", description="Marker opening the reasoning ('' if the prompt opens it).")
    end: str = Field("</think>", description="Marker closing the reasoning; text after it is the answer.")


class BudgetConfig(_Strict):
    max_requests: int | None = Field(
        None, ge=0, description="Most completions (cached ones included) this teacher yields per step."
    )
    max_tokens: int | None = Field(
        None, ge=0, description="Most prompt+completion tokens (cached ones included) per step."
    )


class TransformersOptions(_Strict):
    batch_size: int = Field(16, ge=1, description="Sequences generated together (left-padded).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype.")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'...")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")
    trust_remote_code: bool = Field(False, description="Allow model code from the Hub repo.")


class OpenAIOptions(_Strict):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="Server root, ending in /v1.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight at once.")
    max_retries: int = Field(8, ge=0, description="Retries on 429/5xx/timeouts before the step fails.")
    backoff_s: float = Field(1.0, gt=0, description="First retry delay; doubles each retry (with jitter).")
    max_backoff_s: float = Field(60.0, gt=0, description="Longest retry delay (Retry-After may ask longer).")
    timeout_s: float = Field(600.0, gt=0, description="Per-request timeout.")
    requests_per_minute: float | None = Field(None, gt=0, description="Client-side request rate limit.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Client-side token rate limit.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra JSON fields sent with every request (e.g. chat_template_kwargs)."
    )


class VLLMOptions(_Strict):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model (tensor parallelism).")
    dtype: str = Field("auto", description="vLLM dtype.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may use.")
    max_model_len: int | None = Field(None, ge=1, description="Context length cap (default: model's).")
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (faster start, slower decode).")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the chat template (e.g. enable_thinking)."
    )
    engine_args: dict[str, Any] = Field(default_factory=dict, description="Other vllm.LLM(...) arguments.")


class LlamaCppOptions(_Strict):
    n_ctx: int = Field(4096, ge=128, description="Context window.")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: llama.cpp's choice).")
    n_gpu_layers: int = Field(0, description="Layers offloaded to a GPU (-1 = all).")


BACKEND_OPTIONS: dict[str, type[_Strict]] = {
    "transformers": TransformersOptions,
    "openai": OpenAIOptions,
    "vllm": VLLMOptions,
    "llama_cpp": LlamaCppOptions,
}

# Options that change speed, not outputs: left out of the response-cache key, so that
# e.g. raising concurrency or batch size reuses everything already generated.
RUNTIME_OPTIONS = {
    "batch_size", "device", "threads", "base_url", "api_key_env", "concurrency", "max_retries",
    "backoff_s", "max_backoff_s", "timeout_s", "requests_per_minute", "tokens_per_minute",
    "tensor_parallel_size", "gpu_memory_utilization", "enforce_eager", "n_threads", "n_gpu_layers",
}


class TeacherConfig(_Strict):
    name: str = Field(description="Teacher name, written to the 'teacher' column.")
    backend: Literal["transformers", "openai", "vllm", "llama_cpp"] = Field(
        "transformers", description="Which engine runs the model."
    )
    model: str = Field(
        description="Hub id, local directory, GGUF file, served model name (openai), "
        "or bundled:smollm2 / bundled:gemma3-270m."
    )
    prompt: PromptConfig = Field(description="Chat or completion prompt template.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampling parameters.")
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig, description="Reasoning split markers.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Spending limits for this teacher.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options (see backend docs).")

    @model_validator(mode="after")
    def _check_options(self) -> TeacherConfig:
        # Validated here so a typo in an option fails when the recipe loads.
        self.options = BACKEND_OPTIONS[self.backend].model_validate(self.options).model_dump()
        context = {"vllm": ("max_model_len", self.options.get("max_model_len")),
                   "llama_cpp": ("n_ctx", self.options.get("n_ctx"))}.get(self.backend)
        if context and context[1] and self.sampling.max_tokens >= context[1]:
            raise ValueError(
                f"teacher {self.name!r}: sampling.max_tokens={self.sampling.max_tokens} leaves no room for the "
                f"prompt in options.{context[0]}={context[1]} (the context holds prompt + completion); "
                f"lower max_tokens or raise {context[0]}")
        return self

    def backend_options(self) -> Any:
        return BACKEND_OPTIONS[self.backend].model_validate(self.options)


class GenerateConfig(OperatorConfig):
    teachers: list[TeacherConfig] = Field(
        min_length=1, description="Teachers to sample from; each yields n rows per problem."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> GenerateConfig:
        names = [t.name for t in self.teachers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"teacher names must be unique; repeated: {duplicates}")
        return self
