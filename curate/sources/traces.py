"""Turn a dump of existing model outputs into the trace table (see curate.schema.TRACE_COLUMNS).

Three row shapes (`TraceMap.shape`): one trace per record; one record per problem with a
list of generations and parallel lists (labels, finish reasons, ...), exploded to one
trace per element; chat turns (`messages` with role/content, ShareGPT `conversations`
with from/value). Reasoning is cut out of the completion at the first marker pair found
(`<think>`, Sky-T1's `<|begin_of_thought|>`), or comes from its own field
(`reasoning_content`). A block that opens and never closes is a trace cut off by the token
limit: finish_reason "length", all reasoning, no answer.

Ids follow the schema: `problem_id` from the problem text, so an imported trace and a
generated one of the same problem grade and dedupe together; `trace_id` from problem,
teacher, model, sample index and the source name, stable across reruns.

Bad input stops the import with one error naming the file, the record (1-based) and the
field, before anything is written. The mapping runs as polars expressions (the split is
curate.llm.reasoning's, shared with generation). Python reads rows only where polars has no
expression or cannot tell: a \\boxed{} or '####' reference answer's parse, the reader's
checks (curate.sources.readers: suspect JSON Lines lines, files whose records mix types),
and the token counts (the Rust tokenizer, batch by batch).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import polars as pl

from curate.llm.reasoning import split_reasoning_frame
from curate.schema import conform, content_hash_expr, problem_id_expr
from curate.sources.config import FieldValue, Source
from curate.sources.problems import (
    answer_as_text,
    first_true,
    record_number,
    reference_expr,
    require_field,
    require_not_blank,
    resolve_path,
    with_options,
)
from curate.sources.readers import (
    FieldKind,
    SourceError,
    jsonl_records,
    polars_errors_named,
    read_source,
    source_format,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

RECORD = "_record"  # 1-based record number in the file, for error messages
TOKEN_FIELDS = ("prompt_tokens", "reasoning_tokens", "answer_tokens", "completion_tokens")
ESTIMATE = "chars/4"
# Bundled models' tokenizers shipped as tokenizer.json (see curate/data/LICENSES.md).
SHIPPED_TOKENIZERS = {"bundled:smollm2": Path(__file__).resolve().parents[1] / "data" / "tokenizers" / "smollm2"
                      / "tokenizer.json"}
# ShareGPT and OpenAI role names, as the trace table's prompt writes them.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
         "system": "system"}


def load_traces(source: Source, recipe_dir: Path, cache_dir: Path | None = None) -> pl.DataFrame:
    """The source's traces as trace-table rows, plus `source_correct` (the dump's label)."""
    return import_traces(source, recipe_dir, cache_dir)[0]


def import_traces(source: Source, recipe_dir: Path, cache_dir: Path | None = None
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(traces, skipped): the source's traces as `load_traces` gives them, and the traces
    it skipped (`on_empty: skip`) as trace rows with `reject_reason` and `reject_detail`
    (the source and the record), for the run's rejections."""
    path = resolve_path(source, recipe_dir)
    raw = read_source(source, path, checked_fields(source))
    if source.limit:
        raw = raw.head(source.limit)
    where = str(path) if path else f"hub dataset {source.hub!r}"
    return map_traces(raw, source, where, cache_dir)


def mapped_fields(source: Source) -> dict[str, str]:
    """Record field -> what it is mapped to: what a file must have (or may have: labels)."""
    t = source.traces
    fields = {} if t.shape == "chat" and "problem" not in source.fields.model_fields_set else {
        source.fields.problem: "problem"}
    if source.fields.answer:
        fields[source.fields.answer] = "reference answer"
    if source.fields.options:
        fields[source.fields.options] = "options"
    if t.shape == "chat":
        fields[t.messages] = "messages"
    else:
        for role in ("completion", "reasoning", "answer"):
            if getattr(t, role):
                fields[getattr(t, role)] = role
    for role in ("label", "finish_reason", "sample_index", *TOKEN_FIELDS):
        if getattr(t, role):
            fields[getattr(t, role)] = role
    for role in ("teacher", "model"):
        if isinstance(getattr(t, role), FieldValue):
            fields[getattr(t, role).field] = role
    return fields


def first_record_fields(source: Source, path: Path) -> list[str] | None:
    """The field names of the file's first record (None for formats read whole: a Hub
    dataset or dataset folder), so a recipe's mapping is checked before a run."""
    if not path.exists():
        raise SourceError(f"{path}: file not found (source {source.name!r})")
    fmt = source_format(source, path)
    if fmt == "parquet":
        return list(pl.read_parquet_schema(path))
    if fmt == "csv":
        return pl.read_csv(path, n_rows=0, infer_schema=False).columns
    if fmt == "jsonl":
        return list(next(jsonl_records(path), (0, {}))[1])
    if fmt == "json":
        return list(read_source(source, path).columns)
    return None


def checked_fields(source: Source) -> dict[str, FieldKind]:
    """Fields whose JSON type is checked record by record when a file mixes types."""
    t = source.traces
    text: FieldKind = "text_list" if t.shape == "generations" else "text"  # a generations label may be a scalar too
    checked: dict[str, FieldKind] = {}
    if "problem" in mapped_fields(source).values():
        checked[source.fields.problem] = "text"
    if source.fields.answer:
        checked[source.fields.answer] = "answer"
    if t.shape != "chat":
        checked |= {getattr(t, role): text for role in ("completion", "reasoning", "answer") if getattr(t, role)}
    if t.label:
        kind = "text" if t.label_values is not None else "label"
        checked[t.label] = f"{kind}_list" if t.shape == "generations" else kind
    if source.fields.options:
        checked[source.fields.options] = "text_list"
    return checked


def map_traces(raw: pl.DataFrame, source: Source, where: str, cache_dir: Path | None = None
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(traces, skipped): see `import_traces`."""
    mapping = ", ".join(f"field {name!r} as {role}" for name, role in mapped_fields(source).items())
    with polars_errors_named(where, f"mapping {mapping}"):
        return _map_traces(raw, source, where, cache_dir)


def _map_traces(raw: pl.DataFrame, source: Source, where: str, cache_dir: Path | None
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    t = source.traces
    for name, role in mapped_fields(source).items():
        require_field(raw, name, role, where)
    raw = raw.with_row_index(RECORD, offset=1)
    if source.fields.answer:
        raw = raw.with_columns(answer_as_text(raw, source.fields.answer, where, "reference answer"))
    raw = raw.with_columns(reference_answer=reference_expr(raw, source, where))
    unmapped = [c for c in raw.columns if c not in mapped_fields(source) and c not in (RECORD, "reference_answer")]
    raw = raw.with_columns(metadata=pl.struct(unmapped).struct.json_encode() if unmapped else pl.lit("{}"))
    if t.shape == "generations":
        flat = _explode_generations(raw, source, where)
    elif t.shape == "chat":
        flat = _chat_turns(raw, source, where)
    else:
        flat = raw.with_columns(_sample_index=pl.lit(None, pl.Int64))
    flat = _text_parts(flat, source, where)
    frame = flat.select(
        RECORD, "metadata", "reference_answer", "completion", "reasoning", "answer_text", "finish_reason",
        "prompt", "_empty",
        problem=with_options(pl.col("_problem") if "_problem" in flat.columns else pl.col(source.fields.problem),
                             flat, source, where, flat[RECORD]),
        source=pl.lit(source.name), domain=pl.lit(source.domain), tests=pl.lit(None, pl.String),
        teacher=_constant_or_field(t.teacher, pl.lit(source.name)),
        source_correct=_labels(flat, source, where),
        sample_index=pl.col(t.sample_index) if t.sample_index else pl.col("_sample_index"),
        **{name: pl.col(getattr(t, name)) if getattr(t, name) else pl.lit(None, pl.Int64) for name in TOKEN_FIELDS},
    )
    _require_problem_text(frame, source, where)
    frame = frame.with_columns(model=_constant_or_field(t.model, pl.col("teacher")).cast(pl.String))
    frame = _ids(frame, source)
    skipped = frame.filter("_empty")
    frame = _token_counts(frame.filter(~pl.col("_empty")), t.tokenizer, cache_dir)
    skipped = skipped.with_columns(reject_reason=pl.lit("empty_completion"), reject_detail=pl.concat_str(
        pl.lit(f'{{"source": {json.dumps(source.name)}, "record": '), pl.col(RECORD).cast(pl.String), pl.lit("}")))
    return _trace_rows(frame), _trace_rows(skipped)


def _trace_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return conform(frame.drop(RECORD, "completion_tokens", "_empty"), "trace").with_columns(
        pl.col("source_correct").cast(pl.Boolean))


def _constant_or_field(value: str | FieldValue | None, default: pl.Expr) -> pl.Expr:
    if value is None:
        return default
    return pl.col(value.field).cast(pl.String) if isinstance(value, FieldValue) else pl.lit(value)


def _explode_generations(raw: pl.DataFrame, source: Source, where: str) -> pl.DataFrame:
    """One row per element of the completion list; parallel lists must match its length."""
    t = source.traces
    generations = t.completion or t.answer
    assert generations is not None, "Source._one_location: a traces source maps completion or answer"
    lists = [generations]
    for role in ("completion", "reasoning", "answer", "label", "finish_reason", "sample_index", *TOKEN_FIELDS):
        name = getattr(t, role)
        if name and name not in lists and isinstance(raw.schema[name], pl.List):
            lists.append(name)
    if not isinstance(raw.schema[generations], pl.List):
        _bad_record(raw, raw[generations].is_not_null(), generations,
                    f"must be a list of generations (shape: generations), got {raw.schema[generations]}", where)
    counts = raw[generations].list.len()
    for name in lists[1:]:
        differs = raw[name].list.len().ne_missing(counts)
        if differs.any():
            record = first_true(differs)
            raise SourceError(
                f"{where}: record {record + 1}: field {name!r} has {raw[name].list.len()[record]} element(s) "
                f"but {generations!r} has {counts[record]}: parallel lists must have the same length")
    raw = raw.filter(counts > 0).with_columns(_sample_index=pl.int_ranges(0, pl.col(generations).list.len()))
    return raw.explode([*lists, "_sample_index"])


def _chat_turns(raw: pl.DataFrame, source: Source, where: str) -> pl.DataFrame:
    """Problem = the last user turn, completion = the last assistant turn (its
    `reasoning_content` too, when turns carry one), prompt = the turns before it as JSON."""
    name = source.traces.messages
    dtype = raw.schema[name]
    if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
        _bad_record(raw, raw[name].is_not_null(), name,
                    f"must be a list of chat turns ({{role, content}} or {{from, value}}), got {dtype}", where)
    keys = {field.name for field in dtype.inner.fields}
    role_key = "role" if "role" in keys else "from"
    content_key = "content" if "content" in keys else "value"
    if {role_key, content_key} - keys:
        raise SourceError(f"{where}: field {name!r}: chat turns need role/content or from/value keys, "
                          f"got {', '.join(sorted(keys))}")
    role = pl.element().struct.field(role_key).str.to_lowercase().replace_strict(ROLES, default="other")
    content = pl.element().struct.field(content_key)

    def last(of_role: str, value: pl.Expr) -> pl.Expr:
        return pl.col(name).list.eval(value.filter(role == of_role)).list.last()

    turn = pl.struct(role=role, content=content).struct.json_encode()
    prompt = pl.col(name).list.eval(turn.filter(role != "assistant")).list.join(", ")
    columns = {"_problem": last("user", content), "_chat_completion": last("assistant", content),
               "prompt": pl.concat_str(pl.lit("["), prompt, pl.lit("]")), "_sample_index": pl.lit(None, pl.Int64)}
    if "reasoning_content" in keys:
        columns["_chat_reasoning"] = last("assistant", pl.element().struct.field("reasoning_content"))
    if "problem" in source.fields.model_fields_set:
        del columns["_problem"]
    flat = raw.with_columns(**columns)
    if flat["_chat_completion"].is_null().any():
        _bad_record(flat, flat["_chat_completion"].is_null(), name, "has no assistant turn", where)
    if "_problem" in flat.columns and flat["_problem"].is_null().any():
        _bad_record(flat, flat["_problem"].is_null(), name, "has no user turn", where)
    return flat


def _text_parts(flat: pl.DataFrame, source: Source, where: str) -> pl.DataFrame:
    """completion, reasoning, answer_text and finish_reason from the mapped text fields
    (split by curate.llm.reasoning's rules), and `_empty`: the trace has no text at all."""
    t = source.traces
    completion: str | None
    if t.shape == "chat":
        completion = "_chat_completion"
        reasoning = "_chat_reasoning" if "_chat_reasoning" in flat.columns else None
        answer = None
    else:
        completion, reasoning, answer = t.completion, t.reasoning, t.answer
    output = answer or completion
    assert output is not None, "Source._one_location: a traces source maps completion or answer"
    for name, role in ((completion, "completion"), (reasoning, "reasoning"), (answer, "answer")):
        if name and flat.schema[name] not in (pl.String, pl.Null):
            _bad_record(flat, flat[name].is_not_null(), name, f"(mapped to {role}) must be text, got "
                        f"{flat.schema[name]}", where)
    split = split_reasoning_frame(flat[output].cast(pl.String), t.reasoning_markers,
                                  flat[reasoning].cast(pl.String) if reasoning else None)
    inferred = pl.when(split["truncated"]).then(pl.lit("length")).otherwise(pl.lit("stop"))
    finish = pl.coalesce(pl.col(t.finish_reason).cast(pl.String), inferred) if t.finish_reason else inferred
    present = [pl.col(n).cast(pl.String).str.contains(r"\S").fill_null(False) for n in (completion, reasoning, answer)
               if n]
    if "prompt" not in flat.columns:
        flat = flat.with_columns(prompt=pl.col(source.fields.problem))
    parts = flat.with_columns(completion=split["completion"], reasoning=split["reasoning"],
                              answer_text=split["answer"], finish_reason=finish, _empty=~pl.any_horizontal(present))
    if t.on_empty == "error" and parts["_empty"].any():
        _bad_record(parts, parts["_empty"], output, "is empty: the trace has no completion "
                    "(set `on_empty: skip` to skip such traces)", where)
    any_tag = "|".join(re.escape(tag) for tag in t.strip_tags)
    if any_tag and parts.select(pl.col("answer_text").str.contains_any(t.strip_tags).any()).item():  # most have none
        parts = parts.with_columns(pl.col("answer_text").str.replace_all(any_tag, "").str.strip_chars())
    return parts


def _labels(flat: pl.DataFrame, source: Source, where: str) -> pl.Expr:
    """The dump's correctness label: booleans, the integers 0 and 1, or texts that
    `label_values` maps to true or false."""
    name, values = source.traces.label, source.traces.label_values
    if not name:
        return pl.lit(None, pl.Boolean)
    column = flat[name]
    if column.dtype == pl.Null:
        return pl.lit(None, pl.Boolean)
    if values is not None:
        if column.dtype != pl.String:
            _bad_record(flat, column.is_not_null(), name, f"(mapped to label, with label_values) must be text, got "
                        f"{column.dtype}", where)
        unmapped = column.is_not_null() & ~column.is_in(list(values))
        if unmapped.any():
            _bad_record(flat, unmapped, name, f"(mapped to label) is {column.filter(unmapped)[0]!r}, which "
                        f"label_values does not map (it maps {', '.join(map(repr, values))})", where)
        return pl.col(name).replace_strict(values, default=None, return_dtype=pl.Boolean)
    if column.dtype == pl.Boolean:
        return pl.col(name)
    if column.dtype.is_integer():
        bad = column.is_not_null() & ~column.is_in([0, 1])
        if not bad.any():
            return pl.col(name).cast(pl.Boolean)
        _bad_record(flat, bad, name, f"(mapped to label) must be a boolean (or 0/1), got {column.filter(bad)[0]!r}",
                    where)
    _bad_record(flat, column.is_not_null(), name, "(mapped to label) must be a boolean (or 0/1; text labels need "
                f"`label_values`), got {column.dtype}", where)


def _require_problem_text(frame: pl.DataFrame, source: Source, where: str) -> None:
    name = source.fields.problem if frame.schema["problem"] != pl.Null else "problem"
    if frame.schema["problem"] != pl.String:
        _bad_record(frame, frame["problem"].is_not_null(), name,
                    f"(mapped to problem) must be text, got {frame.schema['problem']}", where)
    if frame["problem"].is_null().any():
        _bad_record(frame, frame["problem"].is_null(), name, "(mapped to problem) is null or missing", where)
    require_not_blank(frame["problem"], name, "problem", where, frame[RECORD])


def _bad_record(frame: pl.DataFrame, bad: pl.Series, field: str, message: str, where: str) -> NoReturn:
    record = record_number(bad, frame[RECORD]) if bad.any() else 1
    raise SourceError(f"{where}: record {record}: field {field!r} {message}")


def _ids(frame: pl.DataFrame, source: Source) -> pl.DataFrame:
    """problem_id (hashed once per distinct problem), sample_index (file order within a
    problem and teacher when the dump gives none) and trace_id, as the schema defines them."""
    params = json.dumps(trace_params(source), sort_keys=True)
    key_parts = [pl.col("problem_id"), pl.col("teacher"), pl.col("model"), pl.col("sample_index").cast(pl.String)]
    problems = frame.lazy().select("problem").unique().with_columns(problem_id=problem_id_expr(pl.col("problem"))
                                                                    ).collect()
    # One lazy query over the key columns only: polars runs it on all cores, and the text
    # columns are not gathered (a join did, and took twice as long).
    ids = frame.lazy().select(
        "teacher", "model", "sample_index",
        problem_id=pl.col("problem").replace_strict(problems["problem"], problems["problem_id"]),
    ).with_columns(
        sample_index=pl.coalesce("sample_index", pl.int_range(pl.len()).over("problem_id", "teacher")).cast(pl.Int32)
    ).select("problem_id", "sample_index", trace_id=content_hash_expr(*key_parts, pl.lit(params))).collect()
    return frame.with_columns(ids, generation_params=pl.lit(params))


def trace_params(source: Source) -> dict:
    """The params part of an imported trace's trace_id: traces of two dumps never share one."""
    return {"imported_from": source.name}


def _token_counts(frame: pl.DataFrame, tokenizer: str, cache_dir: Path | None) -> pl.DataFrame:
    """Token counts the dump did not give: a completion total is shared out by character
    length; anything else is counted with `tokenizer`."""
    chars = pl.col("_reasoning_chars") + pl.col("_answer_chars")
    share = (pl.col("completion_tokens") * pl.col("_reasoning_chars") / pl.when(chars > 0).then(chars)
             .otherwise(1)).round(0).cast(pl.Int64)
    # The lengths as columns of their own: counting the reasoning's is a pass over all of it.
    frame = frame.lazy().with_columns(_reasoning_chars=pl.col("reasoning").str.len_chars(),
                                      _answer_chars=pl.col("answer_text").str.len_chars()
    ).with_columns(reasoning_tokens=pl.coalesce("reasoning_tokens", share)).with_columns(
        answer_tokens=pl.coalesce("answer_tokens", pl.col("completion_tokens") - pl.col("reasoning_tokens"))
    ).drop("_reasoning_chars", "_answer_chars").collect()
    for column, text in (("prompt_tokens", "problem"), ("reasoning_tokens", "reasoning"),
                         ("answer_tokens", "answer_text")):
        missing = frame[column].is_null()
        if missing.any():
            counted = count_tokens(frame[text].filter(missing), tokenizer, cache_dir)
            frame = frame.with_columns(frame[column].cast(pl.Int64).scatter(missing.arg_true(), counted))
    return frame


# Texts encoded at once: the Rust tokenizer spreads a batch over all cores, and only the
# counts outlive it (2,000 encodings of 19 KB traces held at once took ~1 GB).
TOKENIZE_BATCH = 256


def count_tokens(texts: pl.Series, tokenizer: str, cache_dir: Path | None) -> pl.Series:
    if tokenizer == ESTIMATE:
        return ((texts.str.len_chars() + 3) // 4).cast(pl.Int64)
    encoder = _tokenizer(tokenizer, str(cache_dir) if cache_dir else None)
    texts = texts.fill_null("")
    counts: list[int] = []
    for start in range(0, len(texts), TOKENIZE_BATCH):
        batch = texts.slice(start, TOKENIZE_BATCH).to_list()
        counts.extend(len(encoding.ids) for encoding in encoder.encode_batch_fast(batch, add_special_tokens=False))
    return pl.Series(counts, dtype=pl.Int64)


@cache
def _tokenizer(name: str, cache_dir: str | None) -> Tokenizer:
    """A tokenizer by name: one shipped as a tokenizer.json (`bundled:smollm2`, loaded in
    well under a second); another bundled GGUF model's, read from the GGUF once (seconds)
    and kept as a tokenizer.json in the cache; a local folder or Hub id's, by transformers."""
    from tokenizers import Tokenizer

    from curate.core.paths import default_cache_dir
    from curate.models.bundled import BUNDLED_PREFIX, resolve_model

    if name in SHIPPED_TOKENIZERS:
        return Tokenizer.from_file(str(SHIPPED_TOKENIZERS[name]))
    from transformers import AutoTokenizer

    if not name.startswith(BUNDLED_PREFIX):
        return AutoTokenizer.from_pretrained(name).backend_tokenizer
    saved = Path(cache_dir or default_cache_dir()) / "tokenizers" / name[len(BUNDLED_PREFIX):] / "tokenizer.json"
    if saved.is_file():
        return Tokenizer.from_file(str(saved))
    model = Path(resolve_model(name, Path(cache_dir) if cache_dir else None))
    loaded = AutoTokenizer.from_pretrained(model.parent, gguf_file=model.name).backend_tokenizer
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = saved.with_name(f".{saved.name}.{os.getpid()}.partial")
    loaded.save(str(partial))
    os.replace(partial, saved)
    return loaded
