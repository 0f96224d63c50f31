"""Any OpenAI-compatible server (vLLM serve, SGLang, llama.cpp server, hosted APIs).

Async httpx with a fixed pool of workers (the concurrency limit), client-side
request/token rate limits, and retries with exponential backoff and jitter on 429,
5xx, timeouts and dropped connections, honouring Retry-After. Streaming is off: one
JSON body per completion. Chat prompts go to /chat/completions, completion prompts to
/completions. One HTTP request per sample, each with its own seed, so every sample is
cached on its own.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time

from curate.llm.backends.base import Backend, Completion, GenerationError, Request, Sink

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403}


class RateLimiter:
    """Token bucket refilled continuously at `per_minute`, holding at most one second's
    worth, so traffic is spread over the minute instead of sent in one burst. A request
    bigger than the bucket may overdraw it; later ones then wait the debt off."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.updated = time.monotonic()

    async def acquire(self, amount: float) -> None:
        while True:
            now = time.monotonic()
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
            needed = min(amount, self.capacity)
            if self.level >= needed:
                self.level -= amount
                return
            await asyncio.sleep((needed - self.level) / self.rate)

    def refund(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


class OpenAIBackend(Backend):
    def check(self) -> None:
        import httpx

        options = self.options
        self._headers = {}
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise GenerationError(
                    f"teacher {self.teacher.name!r}: environment variable {options.api_key_env!r} "
                    "(options.api_key_env) is not set; it must hold the API key"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        url = options.base_url.rstrip("/") + "/models"
        try:
            response = httpx.get(url, headers=self._headers, timeout=10)
        except httpx.HTTPError as error:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: cannot reach the OpenAI-compatible server at "
                f"{options.base_url} ({type(error).__name__}: {error})"
            ) from None
        if response.status_code in FATAL_STATUS:
            raise GenerationError(
                f"teacher {self.teacher.name!r}: {options.base_url} refused the API key "
                f"(HTTP {response.status_code}); check {options.api_key_env or 'options.api_key_env'}"
            )
        if response.status_code == 200:
            served = [m.get("id") for m in response.json().get("data", [])]
            if served and self.teacher.model not in served:
                log.warning("teacher %r: model %r is not among those %s lists: %s",
                            self.teacher.name, self.teacher.model, options.base_url, served[:10])

    def generate(self, requests: list[Request], sink: Sink) -> None:
        if requests:
            asyncio.run(self._generate(requests, sink))

    async def _generate(self, requests: list[Request], sink: Sink) -> None:
        import httpx

        options = self.options
        self._request_limit = RateLimiter(options.requests_per_minute) if options.requests_per_minute else None
        self._token_limit = RateLimiter(options.tokens_per_minute) if options.tokens_per_minute else None
        pending = iter(requests)
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
        async with httpx.AsyncClient(
            base_url=options.base_url.rstrip("/") + "/", headers=self._headers,
            timeout=options.timeout_s, limits=limits,
        ) as client:

            async def worker() -> None:
                # Workers share one iterator: at most `concurrency` requests in flight.
                for request in pending:
                    if sink.stopped():
                        return
                    await self._one(client, request, sink)

            workers = [asyncio.create_task(worker()) for _ in range(options.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()

    def _body(self, request: Request) -> tuple[str, dict]:
        sampling = self.teacher.sampling
        body = {
            "model": self.teacher.model,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": request.seed,
            "n": 1,
            "stream": False,
        }
        if sampling.stop:
            body["stop"] = sampling.stop
        body.update(self.options.extra_body)
        if isinstance(request.prompt, str):
            return "completions", {**body, "prompt": request.prompt}
        return "chat/completions", {**body, "messages": request.prompt}

    async def _one(self, client, request: Request, sink: Sink) -> None:
        import httpx

        options = self.options
        path, body = self._body(request)
        estimate = len(request.text) / 4 + self.teacher.sampling.max_tokens
        for attempt in range(options.max_retries + 1):
            if self._request_limit:
                await self._request_limit.acquire(1)
            if self._token_limit:
                await self._token_limit.acquire(estimate)
            wait = None
            try:
                response = await client.post(path, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    data = response.json()
                    if (data.get("choices") or [{}])[0].get("finish_reason") == "abort":
                        sink.failed(request, "the server aborted the request")  # not a completion to cache
                        return
                    completion = parse_response(data, chat=path.startswith("chat"))
                    if self._token_limit:
                        self._token_limit.refund(estimate - completion.prompt_tokens - completion.completion_tokens)
                    sink.done([(request, completion)])
                    return
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code in FATAL_STATUS:
                    raise GenerationError(
                        f"teacher {self.teacher.name!r}: {options.base_url} refused the request ({problem})"
                    )
                if response.status_code not in RETRY_STATUS:
                    sink.failed(request, problem)
                    return
                wait = retry_after_seconds(response.headers.get("retry-after"))
            if attempt == options.max_retries:
                break
            if wait is None:
                wait = min(options.max_backoff_s, options.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            log.info("teacher %r: %s; retry %d in %.1fs", self.teacher.name, problem, attempt + 1, wait)
            sink.retried()
            await asyncio.sleep(wait)
        raise GenerationError(
            f"teacher {self.teacher.name!r}: {options.base_url}/{path} still failing after "
            f"{options.max_retries} retries ({problem}); completions so far are cached, rerun to resume"
        )


def parse_response(data: dict, chat: bool) -> Completion:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    if chat:
        message = choice.get("message") or {}
        text = message.get("content") or ""
        # vLLM and SGLang name it reasoning_content; newer vLLM releases call it reasoning.
        reasoning = message.get("reasoning_content") or message.get("reasoning")
    else:
        text, reasoning = choice.get("text") or "", None
    finish = choice.get("finish_reason") or "stop"
    return Completion(
        text=text,
        finish_reason="length" if finish == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_content=reasoning,
        reasoning_tokens=details.get("reasoning_tokens"),
    )
