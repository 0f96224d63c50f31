"""SkyThought evaluation outputs (`question`, `code` = list of outputs, `score` = their
labels, `gt` = the reference) are one row shape of a trace source: `generations`. In a
recipe:

    - name: skyt1
      kind: traces
      path: math500_skyt1_27b_longcot.jsonl
      fields: {problem: question, answer: solution}   # or answer: gt
      answer_format: boxed                            # with answer: solution
      traces: {shape: generations, completion: code, label: score, teacher: sky-t1}

`read_skythought` does the same from Python (tests and benchmarks), with the file's labels
as `correct` too, so the prune operators can be measured on real long traces.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from curate.llm.reasoning import split_reasoning
from curate.sources.config import Source
from curate.sources.traces import ESTIMATE, load_traces

THOUGHT_OPEN, THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
SOLUTION_TAGS = ("<|begin_of_solution|>", "<|end_of_solution|>")


def skythought_source(path: Path, teacher: str, tokenizer: str = ESTIMATE) -> Source:
    return Source.model_validate({
        "name": Path(path).stem, "path": str(Path(path).resolve()), "kind": "traces",
        "fields": {"problem": "question", "answer": "gt"},
        "traces": {"shape": "generations", "completion": "code", "label": "score", "teacher": teacher,
                   "tokenizer": tokenizer},
    })


def read_skythought(path: Path, teacher: str, tokenizer: str = ESTIMATE) -> pl.DataFrame:
    """One trace row per output, with `correct` (and `source_correct`) from `score`."""
    traces = load_traces(skythought_source(path, teacher, tokenizer), Path("."))
    return traces.with_columns(correct=pl.col("source_correct"))


def split_output(output: str) -> tuple[str, str]:
    """(reasoning, final answer text) of one output, as a trace source splits it."""
    _, reasoning, answer = split_reasoning(output, None, THOUGHT_OPEN, THOUGHT_CLOSE)
    for tag in SOLUTION_TAGS:
        answer = answer.replace(tag, "")
    return reasoning, answer.strip()


def estimate_tokens(text: str) -> int:
    """About 4 characters per token: the usual English BPE average."""
    return (len(text) + 3) // 4
