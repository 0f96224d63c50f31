"""Splitting a completion into its reasoning and its final answer."""

from __future__ import annotations


def split_reasoning(text: str, reasoning_content: str | None, start: str, end: str) -> tuple[str, str, str]:
    """(full completion, reasoning, answer).

    A server that parses reasoning itself returns it apart (`reasoning_content`); the
    full completion is then rebuilt with the markers so that it reads like the raw
    output of a model that did not. Otherwise the text is cut at the end marker. A
    start marker with no end marker is reasoning cut off by the token limit: all
    reasoning, no answer. Models whose chat template already opens the reasoning emit
    only the end marker, which the first rule covers.
    """
    if reasoning_content:
        return f"{start}{reasoning_content}{end}{text}", reasoning_content.strip(), text.strip()
    if end and end in text:
        reasoning, answer = text.split(end, 1)
        reasoning = reasoning.split(start, 1)[1] if start and start in reasoning else reasoning
        return text, reasoning.strip(), answer.strip()
    if start and start in text:
        return text, text.split(start, 1)[1].strip(), ""
    return text, "", text.strip()


def split_token_counts(completion_tokens: int, reasoning: str, answer: str,
                       reasoning_tokens: int | None) -> tuple[int, int]:
    """(reasoning tokens, answer tokens), summing to the completion's token count.

    `reasoning_tokens` is the exact figure when a tokenizer or the server gave one;
    otherwise the completion's tokens are shared out by character length.
    """
    if reasoning_tokens is None:
        characters = len(reasoning) + len(answer)
        reasoning_tokens = round(completion_tokens * len(reasoning) / characters) if characters else 0
    reasoning_tokens = min(max(reasoning_tokens, 0), completion_tokens)
    return reasoning_tokens, completion_tokens - reasoning_tokens
