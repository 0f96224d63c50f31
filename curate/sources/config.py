"""Where problems and existing traces come from: a recipe's `sources:` entries (also its
`eval:` and `compare:` held-out problems), and which source field fills which column.

A source of `kind: problems` fills the problem table; one of `kind: traces` fills the trace
table from a dump of model outputs, in one of the row shapes of `TraceMap.shape`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(StrictModel):
    """Which source field fills which problem-table column."""

    problem: str = Field("problem", description="Field holding the problem text.")
    answer: str | None = Field(
        "answer", description="Field holding the reference answer or solution (null: none)."
    )
    options: str | None = Field(
        None, description="Multiple-choice problems whose options are a separate list of texts: they are "
        "appended to the problem as 'A. ...', 'B. ...' lines (use with `domain: choice`).",
    )
    tests: str | None = Field(None, description="Code problems: field with the test program or list of asserts, "
                              "or (tests_format: cases) the stdin/stdout cases.")
    tests_format: Literal["program", "cases"] = Field(
        "program", description="Code problems: 'program' (a test program or asserts, with entry_point) or 'cases': "
        "stdin/stdout cases as a JSON text or object ({'cases': [{'input', 'output'}, ...], 'time_limit_s'?}, or "
        "APPS' {'inputs': [...], 'outputs': [...]}), or a list of {'input', 'output'}.",
    )
    entry_point: str | None = Field(None, description="Code problems: field naming the function under test.")


DEFAULT_REASONING_MARKERS = (("<think>", "</think>"), ("<|begin_of_thought|>", "<|end_of_thought|>"))
DEFAULT_STRIP_TAGS = ("<|begin_of_solution|>", "<|end_of_solution|>")


class FieldValue(StrictModel):
    """Read a trace column from a record field instead of a constant."""

    field: str = Field(description="Record field holding the value.")


class TraceMap(StrictModel):
    """Which record fields make the trace columns of a `kind: traces` source."""

    shape: Literal["row", "generations", "chat"] = Field(
        "row",
        description="row: one trace per record. generations: one record per problem whose completion "
        "field is a list of generations; label, finish_reason, reasoning and token fields are parallel "
        "lists, exploded to one trace per element. chat: one trace per record, taken from a list of "
        "chat turns (`messages` with role/content, or ShareGPT `conversations` with from/value).",
    )
    completion: str | None = Field(
        "completion",
        description="Field with the model output (reasoning markers and all). With `reasoning:` set it "
        "is the answer part only. Ignored for shape chat (the last assistant turn is the completion).",
    )
    reasoning: str | None = Field(
        None, description="Field with the reasoning kept apart from the answer (e.g. `reasoning_content`)."
    )
    answer: str | None = Field(
        None, description="Field with the final answer text, when the dump keeps it apart from the completion."
    )
    messages: str = Field("messages", description="Shape chat: the field with the list of turns.")
    label: str | None = Field(
        None, description="Field with the dump's own correctness label (boolean, or 0/1): kept in "
        "`source_correct`, next to the `correct` that verify computes.",
    )
    label_values: dict[str, StrictBool] | None = Field(
        None, description="Text labels and what they mean, e.g. {matched: true, mismatched: false}; a label "
        "value not listed stops the import naming its record.",
    )
    finish_reason: str | None = Field(
        None, description="Field with 'stop' / 'length'. Without it: 'length' when a reasoning block is "
        "left open (the trace was cut off), 'stop' otherwise.",
    )
    teacher: str | FieldValue | None = Field(
        None, description="Teacher name: a constant, or {field: NAME}. Default: the source name."
    )
    model: str | FieldValue | None = Field(
        None, description="Model id: a constant, or {field: NAME}. Default: the teacher."
    )
    sample_index: str | None = Field(
        None, description="Field with the sample index. Default: the position in the generations list "
        "(shape generations), or the record's order among those of its problem and teacher.",
    )
    prompt_tokens: str | None = Field(None, description="Field with the prompt's token count.")
    reasoning_tokens: str | None = Field(None, description="Field with the reasoning's token count.")
    answer_tokens: str | None = Field(None, description="Field with the answer's token count.")
    completion_tokens: str | None = Field(
        None, description="Field with the whole output's token count (shared out between reasoning and "
        "answer by character length when the parts are not counted apart).",
    )
    tokenizer: str = Field(
        "bundled:smollm2",
        description="Counts the tokens no field gives (a dump's own counts always win): a tokenizer "
        "(`bundled:NAME`, a local folder or a Hub id; `bundled:smollm2` ships as a tokenizer.json), or "
        "`chars/4` for a 4-characters-per-token estimate.",
    )
    reasoning_markers: list[tuple[str, str]] = Field(
        list(DEFAULT_REASONING_MARKERS),
        description="(start, end) marker pairs around the reasoning, tried in order.",
    )
    on_empty: Literal["error", "skip"] = Field(
        "error", description="A trace with no text at all (an empty generation): error stops the import "
        "naming the record; skip leaves it out and records it in the run's rejections (`empty_completion`).",
    )
    strip_tags: list[str] = Field(
        list(DEFAULT_STRIP_TAGS), description="Tags removed from the answer text (e.g. Sky-T1's solution tags)."
    )


class Source(StrictModel):
    name: str = Field(description="Short name, recorded in the `source` column.")
    kind: Literal["problems", "traces"] = Field(
        "problems", description="problems: rows of the problem table. traces: existing model outputs, "
        "rows of the trace table (see `traces`).",
    )
    path: str | None = Field(None, description="Local file or HF dataset folder, relative to the recipe.")
    hub: str | None = Field(None, description="Or a Hub dataset name for datasets.load_dataset.")
    hub_config: str | None = Field(None, description="Hub dataset configuration name.")
    revision: str | None = Field(None, description="Hub dataset revision (pin it for reproducibility).")
    split: str = Field("train", description="Split to read from a Hub dataset or dataset folder.")
    format: Literal["jsonl", "json", "parquet", "csv", "hf_disk"] | None = Field(
        None, description="File format; inferred from the suffix when omitted."
    )
    fields: FieldMap = Field(default_factory=FieldMap)
    answer_format: Literal["plain", "gsm8k", "boxed"] = Field(
        "plain",
        description="How the reference answer is read from the answer field: as is, after "
        "GSM8K's '####', or the last \\boxed{} of a MATH-style solution.",
    )
    domain: Literal["math", "choice", "code"] = Field(
        "math",
        description="Decides the verifier: math (math-verify), choice (multiple-choice letter) or code (tests).")
    limit: int | None = Field(None, ge=1, description="Read only the first N records.")
    license: str | None = Field(None, description="License of the data, for the dataset card.")
    traces: TraceMap = Field(default_factory=TraceMap, description="kind traces: which fields make the trace columns.")

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        if self.traces.label_values is not None and not self.traces.label_values:
            raise ValueError("`traces.label_values` maps label texts to true/false: give at least one")
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path or hub")
        if self.kind == "traces" and not (self.traces.completion or self.traces.answer or self.traces.shape == "chat"):
            raise ValueError("a traces source needs `traces.completion` or `traces.answer`")
        if "traces" in self.model_fields_set and self.kind != "traces":
            raise ValueError("`traces:` is for sources of `kind: traces`")
        return self
