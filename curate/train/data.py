"""Reading the training examples: a published dataset's `messages` column as SFT
prompt/completion pairs, or its `preference` config's prompt/chosen/rejected for DPO.

The last message of each conversation must be the assistant's; it becomes the completion
and everything before it (system, user turns) the prompt. A dataset published with its
`reasoning_mode` column (a reasoning_modes step) has each row's mode put in front of its
system turn, as Llama-Nemotron's "detailed thinking on/off" (curate.schema's
DEFAULT_MODE_PROMPTS), unless the system turn already starts with it. TRL's prompt-completion path
then masks the prompt out of the loss with any student chat template, which its
`assistant_only_loss` cannot promise (that needs `{% generation %}` markers).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from curate.schema import DEFAULT_MODE_PROMPTS, with_mode_prompt

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
MODE_COLUMN = "reasoning_mode"


class DatasetError(ValueError):
    """The training data is missing, or a record does not hold a usable conversation."""


def read_conversations(dataset: str, split: str = "train") -> pl.DataFrame:
    """`prompt` and `completion` columns (lists of {role, content}) of every example."""
    path = Path(dataset)
    if path.is_dir():
        frames = [_read_messages_file(file) for file in split_files(path, split)]
        messages = pl.concat(frames)
    elif path.is_file():
        messages = _read_messages_file(path)
    elif HUB_ID.match(dataset):
        messages = _read_hub(dataset, split)
    else:
        raise DatasetError(f"{dataset}: no such file or folder, and not a Hub dataset id ('owner/name')")
    return _to_prompt_completion(messages)


PREFERENCE_FOLDER = "preference"  # the preference config's shards in a published version


def read_preferences(dataset: str, split: str = "train") -> pl.DataFrame:
    """`prompt`, `chosen` and `rejected` columns (lists of {role, content}) of every pair:
    a published version's `preference` config, a parquet file, or a Hub dataset's."""
    path = Path(dataset)
    if path.is_dir():
        frames = [_read_pairs_file(file) for file in split_files(path, split, PREFERENCE_FOLDER)]
        pairs = pl.concat(frames)
    elif path.is_file():
        pairs = _read_pairs_file(path)
    elif HUB_ID.match(dataset):
        from datasets import load_dataset

        hub = load_dataset(dataset, PREFERENCE_FOLDER, split=split)
        pairs = _normalise_pairs(hub.select_columns(list(PAIR_FIELDS)).to_polars(), f"{dataset}:{split}")
    else:
        raise DatasetError(f"{dataset}: no such file or folder, and not a Hub dataset id ('owner/name')")
    return _check_pairs(pairs)


PAIR_FIELDS = ("prompt", "chosen", "rejected")


def _read_pairs_file(file: Path) -> pl.DataFrame:
    try:
        schema = pl.read_parquet_schema(file)
    except Exception as error:  # polars raises several error types for non-parquet input
        raise DatasetError(f"{file}: not a readable parquet file ({error})") from None
    missing = [name for name in PAIR_FIELDS if name not in schema]
    if missing:
        raise DatasetError(f"{file}: no {', '.join(repr(m) for m in missing)} column (columns: {', '.join(schema)})")
    return _normalise_pairs(pl.read_parquet(file, columns=list(PAIR_FIELDS)), str(file))


def _normalise_pairs(frame: pl.DataFrame, origin: str) -> pl.DataFrame:
    turns = {name: _normalise(frame.select(pl.col(name).alias("messages")), f"{origin} field '{name}'")["messages"]
             for name in PAIR_FIELDS}
    return frame.with_row_index("row").select(pl.lit(origin).alias("origin"), "row", **turns)


def _check_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each pair: a prompt ending in a user turn, and one assistant turn on each side."""
    def one_assistant_turn(name: str) -> pl.Expr:
        turns = pl.col(name)
        return (turns.list.len() == 1) & (turns.list.first().struct.field("role") == "assistant") & (
            turns.list.first().struct.field("content").is_not_null())

    checks = {
        "prompt": (pl.col("prompt").list.len() >= 1) & (pl.col("prompt").list.last().struct.field("role") == "user"),
        "chosen": one_assistant_turn("chosen"),
        "rejected": one_assistant_turn("rejected"),
    }
    for name, valid in checks.items():
        bad = pairs.filter(~valid.fill_null(False))
        if bad.height:
            first = bad.row(0, named=True)
            rule = "end with a user turn" if name == "prompt" else "be one assistant turn"
            raise DatasetError(f"{first['origin']} row {first['row'] + 1}: field '{name}' must {rule} "
                               f"({bad.height} such rows)")
    return pairs


def split_files(folder: Path, split: str, subfolder: str = "data") -> list[Path]:
    files = sorted((folder / subfolder).glob(f"{split}-*.parquet")) or sorted(
        (folder / subfolder).glob(f"{split}.parquet"))
    if files:
        return files
    versions = sorted(p.name for p in folder.iterdir() if (p / "data").is_dir())
    if versions:
        raise DatasetError(
            f"{folder} holds dataset versions ({', '.join(versions)}): point at one, e.g. {folder / versions[-1]}"
        )
    if subfolder == PREFERENCE_FOLDER and (folder / "data").is_dir():
        raise DatasetError(f"{folder}: no preference/{split}-*.parquet files: the run that published it formed "
                           "no preference pairs (add a preference_pairs step)")
    raise DatasetError(f"{folder}: no {subfolder}/{split}-*.parquet files (is it a published dataset folder?)")


def _read_messages_file(file: Path) -> pl.DataFrame:
    try:
        schema = pl.read_parquet_schema(file)
    except Exception as error:  # polars raises several error types for non-parquet input
        raise DatasetError(f"{file}: not a readable parquet file ({error})") from None
    if "messages" not in schema:
        raise DatasetError(f"{file}: no 'messages' column (columns: {', '.join(schema)})")
    frame = pl.read_parquet(file, columns=["messages", *([MODE_COLUMN] if MODE_COLUMN in schema else [])])
    return _normalise(frame, str(file))


def _read_hub(dataset_id: str, split: str) -> pl.DataFrame:
    from datasets import load_dataset

    hub = load_dataset(dataset_id, split=split)
    if "messages" not in hub.column_names:
        raise DatasetError(f"Hub dataset {dataset_id} ({split}): no 'messages' column ({', '.join(hub.column_names)})")
    columns = ["messages", *([MODE_COLUMN] if MODE_COLUMN in hub.column_names else [])]
    return _normalise(hub.select_columns(columns).to_polars(), f"{dataset_id}:{split}")


def _normalise(frame: pl.DataFrame, origin: str) -> pl.DataFrame:
    """Messages as list<struct{role, content}>, with the file and row each came from."""
    dtype = frame.schema["messages"]
    if dtype == pl.String:  # a JSON-encoded list, as some exporters write it
        messages = pl.col("messages").str.json_decode(pl.List(MESSAGE))
    elif isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        fields = {f.name for f in dtype.inner.fields}
        if not {"role", "content"} <= fields:
            raise DatasetError(f"{origin}: 'messages' items need 'role' and 'content' fields, found {sorted(fields)}")
        messages = pl.col("messages").list.eval(
            pl.struct(pl.element().struct.field("role"), pl.element().struct.field("content"))
        )
    else:
        raise DatasetError(f"{origin}: 'messages' must be a list of {{role, content}}, found {dtype}")
    if MODE_COLUMN in frame.columns:
        messages = _with_mode_prompt(messages, pl.col(MODE_COLUMN).cast(pl.String))
    return frame.with_row_index("row").select(
        pl.lit(origin).alias("origin"), "row", messages.alias("messages")
    )


def _with_mode_prompt(messages: pl.Expr, mode: pl.Expr) -> pl.Expr:
    """`messages` with the row's mode text in front of its system turn (a system turn of its
    own when there is none); as is when the row has no mode or its system turn starts with it."""
    mode_text = mode.replace_strict(DEFAULT_MODE_PROMPTS, default=None, return_dtype=pl.String)
    first = messages.list.first()
    has_system = (first.struct.field("role") == "system").fill_null(False)
    system = pl.when(has_system).then(first.struct.field("content"))
    tagged = pl.struct(pl.lit("system").alias("role"), with_mode_prompt(system, mode_text).alias("content"))
    turns_after_system = pl.when(has_system).then(messages.list.slice(1)).otherwise(messages)
    already = system.str.starts_with(mode_text).fill_null(False)
    return pl.when(mode_text.is_null() | already).then(messages).otherwise(
        pl.concat_list([tagged, turns_after_system]))


def _to_prompt_completion(messages: pl.DataFrame) -> pl.DataFrame:
    length = pl.col("messages").list.len()
    last = pl.col("messages").list.last()
    bad = messages.filter(
        pl.col("messages").is_null()
        | (length < 2)
        | (last.struct.field("role") != "assistant")
        | last.struct.field("content").is_null()
    )
    if bad.height:
        first = bad.row(0, named=True)
        raise DatasetError(
            f"{first['origin']} row {first['row']}: field 'messages' must end with an assistant turn after "
            f"at least one other turn ({bad.height} such rows)"
        )
    return messages.select(
        "origin",
        "row",
        prompt=pl.col("messages").list.slice(0, length - 1),
        completion=pl.col("messages").list.tail(1),
    )
