"""Read SkyThought evaluation outputs (`code` = list of outputs, `score` = labels, `gt` =
reference) as a trace table, so pruning can be tested and measured on real long traces.

The files record neither finish reasons nor token counts: `finish_reason` is "stop"
(truncation shows as an unclosed thought block) and tokens come from `count_tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl

from curate.schema import conform, content_hash

THOUGHT_OPEN, THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
SOLUTION_TAGS = ("<|begin_of_solution|>", "<|end_of_solution|>")


def split_output(output: str) -> tuple[str, str]:
    """(reasoning, final answer text), split as `generate` splits: an unclosed thought is
    all reasoning and no answer; untagged output is all answer."""
    if THOUGHT_CLOSE in output:
        reasoning, answer = output.split(THOUGHT_CLOSE, 1)
        for tag in SOLUTION_TAGS:
            answer = answer.replace(tag, "")
        return reasoning.replace(THOUGHT_OPEN, "").strip(), answer.strip()
    if THOUGHT_OPEN in output:
        return output.split(THOUGHT_OPEN, 1)[1].strip(), ""
    return "", output.strip()


def estimate_tokens(text: str) -> int:
    """About 4 characters per token: the usual English BPE average."""
    return (len(text) + 3) // 4


def read_skythought(
    path: Path, teacher: str, count_tokens: Callable[[str], int] = estimate_tokens
) -> pl.DataFrame:
    """One trace row per output, with `correct` from the file's `score` labels."""
    rows = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            outputs, scores = record["code"], record["score"]
            problem, reference = record["question"], str(record["gt"])
        except (json.JSONDecodeError, KeyError) as error:
            raise ValueError(f"{path}:{line_number}: not a SkyThought output record ({error!r})") from None
        problem_id = content_hash(problem)
        for index, (output, score) in enumerate(zip(outputs, scores, strict=True)):
            reasoning, answer = split_output(output)
            rows.append({
                "problem_id": problem_id, "problem": problem, "reference_answer": reference,
                "source": Path(path).stem, "domain": "math", "tests": None,
                "metadata": json.dumps({"idx": record.get("idx"), "level": record.get("level")}),
                "trace_id": content_hash(problem_id, teacher, str(index)), "teacher": teacher,
                "model": teacher, "sample_index": index, "prompt": problem, "completion": output,
                "reasoning": reasoning, "answer_text": answer, "prompt_tokens": count_tokens(problem),
                "reasoning_tokens": count_tokens(reasoning), "answer_tokens": count_tokens(answer),
                "finish_reason": "stop", "generation_params": "{}", "correct": bool(score),
            })
    return conform(pl.DataFrame(rows, infer_schema_length=None), "trace")
