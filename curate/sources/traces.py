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
field, before anything is written. Everything runs as polars expressions, and the
reasoning is cut out of the completion as views of its memory, not a copy
(curate.substrings). Per-row Python is left only where polars has no expression: a
\\boxed{} or '####' reference answer's parse, and a tokenizer when one counts tokens.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import NoReturn

import polars as pl

from curate.schema import conform, content_hash_expr, problem_id_expr
from curate.sources.config import FieldValue, Source
from curate.sources.problems import answer_as_text, first_true, reference_expr, require_field, resolve_path
from curate.sources.readers import FieldKind, SourceError, jsonl_records, read_source, source_format
from curate.substrings import strip_whitespace, stripped_substrings

RECORD = "_record"  # 1-based record number in the file, for error messages
MARKER_OFFSET = "_marker_offset_"  # prefix of the temporary reasoning-marker offset columns
TOKEN_FIELDS = ("prompt_tokens", "reasoning_tokens", "answer_tokens", "completion_tokens")
ESTIMATE = "chars/4"
# ShareGPT and OpenAI role names, as the trace table's prompt writes them.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
         "system": "system"}


def load_traces(source: Source, recipe_dir: Path, cache_dir: Path | None = None) -> pl.DataFrame:
    """The source's traces as trace-table rows, plus `source_correct` (the dump's label)."""
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
        checked[t.label] = "label_list" if t.shape == "generations" else "label"
    return checked


def map_traces(raw: pl.DataFrame, source: Source, where: str, cache_dir: Path | None = None) -> pl.DataFrame:
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
        "prompt",
        problem=pl.col("_problem") if "_problem" in flat.columns else pl.col(source.fields.problem),
        source=pl.lit(source.name), domain=pl.lit(source.domain), tests=pl.lit(None, pl.String),
        teacher=_constant_or_field(t.teacher, pl.lit(source.name)),
        source_correct=_labels(flat, source, where),
        sample_index=pl.col(t.sample_index) if t.sample_index else pl.col("_sample_index"),
        **{name: pl.col(getattr(t, name)) if getattr(t, name) else pl.lit(None, pl.Int64) for name in TOKEN_FIELDS},
    )
    _require_problem_text(frame, source, where)
    frame = frame.with_columns(model=_constant_or_field(t.model, pl.col("teacher")).cast(pl.String))
    frame = _ids(frame, source)
    frame = _token_counts(frame, t.tokenizer, cache_dir)
    return conform(frame.drop(RECORD, "completion_tokens"), "trace").with_columns(
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
    """completion, reasoning, answer_text and finish_reason from the mapped text fields."""
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
    text = pl.col(output)
    start, end = t.reasoning_markers[0] if t.reasoning_markers else ("", "")
    if reasoning:
        # The reasoning came apart; rebuild the raw output around it, as generate does.
        reasoning_text, answer_text = pl.col(reasoning).fill_null(""), text.fill_null("")
        has_reasoning = reasoning_text.str.contains(r"\S")
        completion_expr = pl.when(has_reasoning).then(pl.concat_str(pl.lit(start), reasoning_text, pl.lit(end),
                                                                    answer_text)).otherwise(answer_text)
        parts_of_text = {"_reasoning": reasoning_text, "_answer": answer_text}
        truncated = pl.lit(False)
    else:
        completion_expr = text
        flat, searched = _with_marker_offsets(flat, text, t.reasoning_markers)
        reasoning_begin, reasoning_end, answer_begin, truncated = _split_markers(text, searched)
        parts_of_text = {"_reasoning_begin": reasoning_begin, "_reasoning_end": reasoning_end,
                         "_answer_begin": answer_begin, "_length": text.str.len_bytes().cast(pl.Int64)}
    inferred = pl.when(truncated).then(pl.lit("length")).otherwise(pl.lit("stop"))
    finish = pl.coalesce(pl.col(t.finish_reason).cast(pl.String), inferred) if t.finish_reason else inferred
    if "prompt" not in flat.columns:
        flat = flat.with_columns(prompt=pl.col(source.fields.problem))
    # Lazy, so the parts shared by these expressions are computed once.
    parts = flat.lazy().with_columns(completion=completion_expr, finish_reason=finish, **parts_of_text
                                     ).drop(pl.selectors.starts_with(MARKER_OFFSET)).collect()
    # Two threads: polars and numpy cut the reasoning and the answer on two cores. Each
    # thread gets a Series of one chunk (turning it into Arrow would rechunk it in place).
    with ThreadPoolExecutor(2) as pool:
        if reasoning:
            reasoning_part, answer_part = pool.map(strip_whitespace, [parts["_reasoning"].rechunk(),
                                                                      parts["_answer"].rechunk()])
        else:  # the reasoning is cut without copying: it shares the completion's memory
            texts = parts[output].rechunk()
            reasoning_part, answer_part = pool.map(stripped_substrings, [texts, texts],
                                                   [parts["_reasoning_begin"], parts["_answer_begin"]],
                                                   [parts["_reasoning_end"], parts["_length"]])
    parts = parts.with_columns(reasoning=reasoning_part, answer_text=answer_part).drop(*parts_of_text)
    # Only a trace with no reasoning and no answer text can be empty; check those exactly.
    maybe_empty = parts.select((pl.col("reasoning").str.len_bytes().fill_null(0) == 0)
                               & (pl.col("answer_text").str.len_bytes().fill_null(0) == 0)).to_series()
    if maybe_empty.any():
        present = [pl.col(n).str.contains(r"\S").fill_null(False) for n in (completion, reasoning, answer) if n]
        empty = maybe_empty & flat.select(~pl.any_horizontal(present)).to_series()
        if empty.any():
            _bad_record(flat, empty, output, "is empty: the trace has no completion", where)
    any_tag = "|".join(re.escape(tag) for tag in t.strip_tags)
    if any_tag and parts.select(pl.col("answer_text").str.contains_any(t.strip_tags).any()).item():  # most have none
        parts = parts.with_columns(pl.col("answer_text").str.replace_all(any_tag, "").str.strip_chars())
    return parts


def _with_marker_offsets(frame: pl.DataFrame, text: pl.Expr, markers: list[tuple[str, str]]
                         ) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """`frame` with the byte offset of each marker in the text (null: absent), one column per
    marker, and the marker pairs looked for. The first pair found wins, so a pair is looked
    for only in texts where no earlier pair was found, and not at all once every text has
    one: a dump of `<think>` traces is not searched for Sky-T1 markers."""
    found_earlier = pl.lit(False)
    for pair, markers_of_pair in enumerate(markers):
        if pair and frame.select(found_earlier.all()).item():
            return frame, markers[:pair]
        searched = text if pair == 0 else pl.when(~found_earlier).then(text)
        columns = [f"{MARKER_OFFSET}{pair}_{side}" for side in range(2)]
        frame = frame.with_columns(searched.str.find(marker, literal=True).cast(pl.Int64).alias(column)
                                   for marker, column in zip(markers_of_pair, columns, strict=True))
        found_earlier = found_earlier | pl.col(columns[0]).is_not_null() | pl.col(columns[1]).is_not_null()
    return frame, markers


def _split_markers(text: pl.Expr, markers: list[tuple[str, str]]) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """(reasoning begin, reasoning end, answer begin, truncated): byte offsets in the text, cut
    at the first marker pair found (offsets from `_with_marker_offsets`). Text before the end
    marker is reasoning (models whose template opens the block emit only the end); an open
    block with no end is all reasoning; untagged text is all answer. The answer runs to the
    end of the text."""
    length = text.str.len_bytes().cast(pl.Int64)
    if not markers:
        return pl.lit(0, pl.Int64), pl.lit(0, pl.Int64), pl.lit(0, pl.Int64), pl.lit(False)
    start_at = end_at = start_len = end_len = pl.lit(None, pl.Int64)
    for pair in reversed(range(len(markers))):  # the first pair found wins: it is applied last
        start, end = markers[pair]
        found_start, found_end = pl.col(f"{MARKER_OFFSET}{pair}_0"), pl.col(f"{MARKER_OFFSET}{pair}_1")
        found = found_start.is_not_null() | found_end.is_not_null()
        start_at = pl.when(found).then(found_start).otherwise(start_at)
        end_at = pl.when(found).then(found_end).otherwise(end_at)
        start_len = pl.when(found).then(pl.lit(len(start.encode()))).otherwise(start_len)
        end_len = pl.when(found).then(pl.lit(len(end.encode()))).otherwise(end_len)
    closed, opened = end_at.is_not_null(), start_at.is_not_null()
    # reasoning starts after an opening marker that comes before the end (else at 0)
    begin = pl.when(opened & (~closed | (start_at < end_at))).then(start_at + start_len).otherwise(0)
    # an open block runs to the end of the text; untagged text has no reasoning
    reasoning_end = pl.when(closed).then(end_at).when(opened).then(length).otherwise(0)
    # the answer follows the end marker; an open block has none; untagged text is all answer
    answer_begin = pl.when(closed).then(end_at + end_len).when(opened).then(length).otherwise(0)
    return begin, reasoning_end, answer_begin, ~closed & opened


def _labels(flat: pl.DataFrame, source: Source, where: str) -> pl.Expr:
    """The dump's correctness label: booleans, or the integers 0 and 1."""
    name = source.traces.label
    if not name:
        return pl.lit(None, pl.Boolean)
    column = flat[name]
    if column.dtype == pl.Boolean or column.dtype == pl.Null:
        return pl.col(name).cast(pl.Boolean)
    if column.dtype.is_integer():
        bad = column.is_not_null() & ~column.is_in([0, 1])
        if not bad.any():
            return pl.col(name).cast(pl.Boolean)
        _bad_record(flat, bad, name, f"(mapped to label) must be a boolean (or 0/1), got {column.filter(bad)[0]!r}",
                    where)
    _bad_record(flat, column.is_not_null(), name, f"(mapped to label) must be a boolean, got {column.dtype}", where)


def _require_problem_text(frame: pl.DataFrame, source: Source, where: str) -> None:
    name = source.fields.problem if frame.schema["problem"] != pl.Null else "problem"
    if frame.schema["problem"] != pl.String:
        _bad_record(frame, frame["problem"].is_not_null(), name,
                    f"(mapped to problem) must be text, got {frame.schema['problem']}", where)
    if frame["problem"].is_null().any():
        _bad_record(frame, frame["problem"].is_null(), name, "(mapped to problem) is null or missing", where)


def _bad_record(frame: pl.DataFrame, bad: pl.Series, field: str, message: str, where: str) -> NoReturn:
    record = frame[RECORD][first_true(bad)] if bad.any() else 1
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


def count_tokens(texts: pl.Series, tokenizer: str, cache_dir: Path | None) -> pl.Series:
    if tokenizer == ESTIMATE:
        return ((texts.str.len_chars() + 3) // 4).cast(pl.Int64)
    encode = _tokenizer(tokenizer, str(cache_dir) if cache_dir else None)
    counts = [len(ids) for ids in encode(texts.fill_null("").to_list(), add_special_tokens=False)["input_ids"]]
    return pl.Series(counts, dtype=pl.Int64)


@cache
def _tokenizer(name: str, cache_dir: str | None):
    """A tokenizer by name. A bundled GGUF model's tokenizer is read from the GGUF once
    (seconds) and saved as a tokenizer folder in the cache, which later runs load quickly."""
    from transformers import AutoTokenizer

    from curate.core.paths import default_cache_dir
    from curate.models.bundled import BUNDLED_PREFIX, resolve_model

    if not name.startswith(BUNDLED_PREFIX):
        return AutoTokenizer.from_pretrained(name)
    folder = Path(cache_dir or default_cache_dir()) / "tokenizers" / name[len(BUNDLED_PREFIX):]
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    model = Path(resolve_model(name, Path(cache_dir) if cache_dir else None))
    loaded = AutoTokenizer.from_pretrained(model.parent, gguf_file=model.name)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    loaded.save_pretrained(partial)
    try:
        os.replace(partial, folder)
    except OSError:  # another process saved it first
        pass
    return loaded
