"""The dataset card (README.md): what the dataset is and exactly how the run made it.

Every string that comes from data (teacher and model names, source names and paths, step
ids, reject reasons, settings, the recipe's name and text, the title) is hostile: it goes
into the card only through `_text` (escaped Markdown and HTML), `_code` (a code span it
cannot close), `_py` (a Python string literal) or a fence longer than any backtick run in
it, and the YAML header is written by a YAML dumper. A name such as
``m` <img src=x onerror=alert(5)>`` is shown as text, never rendered as HTML.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

import polars as pl
import yaml

from curate.core.rundir import CONTAMINATION_REASONS, DUPLICATE_REASONS, RecipeRecord
from curate.publish.config import PublishConfig
from curate.publish.rows import (
    LINEAGE_COLUMNS,
    PAIR_LINEAGE_COLUMNS,
    PREFERENCE_DESCRIPTIONS,
    PUBLISH_COLUMNS,
)
from curate.publish.run import Run
from curate.schema import KNOWN_COLUMNS

# Step operators whose names say what they did, for the card's summary sentence.
_STEP_WORDS = (
    ("verif", "answer verification"),
    ("dedup", "deduplication"),
    ("decontam", "decontamination"),
    ("grade", "difficulty grading"),
    ("filter", "quality filters"),
    ("prune", "pruning"),
    ("rewrite", "rewriting"),
    ("select", "selection"),
)
_GENERATION_METRICS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens")
_SIZE_CATEGORIES = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
)


@dataclass(frozen=True)
class CardFacts:
    """What the card needs to know about this version besides the run and the rows."""

    version: str
    fingerprint: str
    created_at: str
    shards: int
    local_path: str
    # config name -> a digest of its data files' sha256 (see `config_section`)
    checksums: dict[str, str] = field(default_factory=dict)


def size_category(rows: int) -> str:
    return next((name for limit, name in _SIZE_CATEGORIES if rows < limit), "1B<n<10B")


def dataset_license(run: Run, config: PublishConfig) -> str:
    if config.license:
        return config.license
    licenses = {str(s.license).strip().lower() for s in run.sources if s.license}
    return licenses.pop() if len(licenses) == 1 else "other"


def render_card(run: Run, frame: pl.DataFrame, config: PublishConfig, facts: CardFacts,
                pairs: pl.DataFrame | None = None) -> str:
    from huggingface_hub import DatasetCardData

    configs = [config_section("default", "data", config.split, facts)]
    if pairs is not None:
        configs.append(config_section("preference", "preference", config.split, facts))
    header = DatasetCardData(
        license=dataset_license(run, config),
        pretty_name=_title(run, config),
        language=config.language,
        task_categories=config.task_categories,
        size_categories=[size_category(frame.height)],
        tags=config.tags,
        configs=configs,
    )
    sections = [
        f"---\n{header.to_yaml()}\n---",
        f"# {_text(_title(run, config))}",
        _markdown_without_html(config.description) if config.description else _summary(run, config),
        _facts_table(run, config, facts),
        _load_section(config, facts),
        _format_section(frame, config),
        _funnel_section(run, frame),
        _teachers_section(run),
        _filters_section(run),
        _difficulty_section(run.output),
        _lengths_section(run.output),
        _preference_section(run, pairs, config, facts),
        _sources_section(run, config),
        _recipe_section(run),
        _lineage_section(frame, pairs),
        _citation_section(run, config, facts),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def config_section(name: str, folder: str, split: str, facts: CardFacts) -> dict:
    """One entry of the card's `configs`. `datasets` caches a local folder under its name
    (`v1`), the config name and a hash of this YAML, never of the files: two versions
    called `v1` in different datasets (or a folder republished with other rows) would share
    a cache entry and load each other's rows. The description carries the version and its
    data files' checksum, so the YAML, and with it the cache key, changes with the data."""
    return {
        "config_name": name,
        "description": f"version {facts.version}, data files sha256 {facts.checksums.get(name, '')}",
        "data_files": [{"split": split, "path": f"{folder}/{split}-*"}],
    }


def _title(run: Run, config: PublishConfig) -> str:
    """One line: it is also the YAML `pretty_name` and the BibTeX title."""
    return _one_line(config.pretty_name or run.recipe.name or "") or "curate dataset"


def _summary(run: Run, config: PublishConfig) -> str:
    frame = run.output
    teachers = _distinct(frame, "teacher")
    sources = [s.name for s in run.sources if s.name]
    done = [word for key, word in _STEP_WORDS if any(key in step.op for step in run.steps)]
    if "trace_id" in frame.columns:
        problems = f" to {frame['problem_id'].n_unique():,} problems" if "problem_id" in frame.columns else ""
        text = (f"**{_text(_title(run, config))}** is a reasoning-distillation dataset: "
                f"{frame.height:,} worked solutions{problems}")
    else:
        text = f"**{_text(_title(run, config))}** is a problem set of {frame.height:,} problems"
    if sources:
        text += f" from {_join(_code(s) for s in sources)}"
    if teachers:
        plural = "s" if len(teachers) > 1 else ""
        text += f", written by {len(teachers)} teacher model{plural} ({_join(_code(t) for t in teachers)})"
    text += "."
    if done:
        text += f" The rows were kept after {_join(done)}."
    if config.messages:
        text += " Each row has a `messages` column in chat format, ready for supervised fine-tuning."
    recipe = run.recipe
    if recipe.name:
        text += (
            f" It was built with curate from the recipe {_code(recipe.name)}"
            f"{_recipe_version(recipe)}; the funnel below shows what every step kept and removed."
        )
    description = _recipe_description(recipe)
    return f"{text}\n\n> {_text(description)}" if description else text


def _recipe_description(recipe: RecipeRecord) -> str | None:
    try:
        parsed = yaml.safe_load(recipe.text or "")
    except yaml.YAMLError:
        return None
    description = parsed.get("description") if isinstance(parsed, dict) else None
    return str(description).strip() if description else None


def _facts_table(run: Run, config: PublishConfig, facts: CardFacts) -> str:
    recipe, frame = run.recipe, run.output
    rows = [
        ("Version", _code(facts.version)),
        ("Rows", f"{frame.height:,} in split {_code(config.split)} ({facts.shards} "
                 f"shard{'s' if facts.shards > 1 else ''})"),
    ]
    if "problem_id" in frame.columns:
        rows.append(("Problems", f"{frame['problem_id'].n_unique():,}"))
    if recipe.name:
        rows.append(("Recipe", f"{_code(recipe.name)}{_recipe_version(recipe)}, "
                               f"sha256 {_code(str(recipe.sha256 or '')[:12])}"))
    rows += [
        ("Built", f"{_when(facts.created_at)} (run finished {_when(run.manifest.finished_at)})"),
        ("Fingerprint", _code(facts.fingerprint)),
        ("License", _code(dataset_license(run, config))),
    ]
    return _table(["", ""], rows)


def _load_section(config: PublishConfig, facts: CardFacts) -> str:
    if config.hub_repo_id:
        load = f"ds = load_dataset({_py(config.hub_repo_id)}, revision={_py(facts.version)}, split={_py(config.split)})"
    else:
        load = f"ds = load_dataset({_py(facts.local_path)}, split={_py(config.split)})"
    code = "from datasets import load_dataset\n\n" + load
    text = f"## Load it\n\n{_fence(code)}python\n{code}\n{_fence(code)}"
    if config.messages:
        text += (
            "\n\nThe `messages` column works with TRL's `SFTTrainer` as it is:\n\n```python\n"
            "from trl import SFTConfig, SFTTrainer\n\n"
            'trainer = SFTTrainer(model="HuggingFaceTB/SmolLM2-135M-Instruct", train_dataset=ds,\n'
            '                     args=SFTConfig(output_dir="sft-out"))\ntrainer.train()\n```'
        )
    if config.hub_repo_id:
        revision = _code(f"revision={_py(facts.version)}")
        text += f"\n\nEach version is a tag of the repo ({revision}); `main` holds the latest."
    return text


def _format_section(frame: pl.DataFrame, config: PublishConfig) -> str:
    described = {**{name: column.description for name, column in KNOWN_COLUMNS.items()}, **PUBLISH_COLUMNS}
    rows = [(_code(name), _code(dtype), _text(described.get(name, ""))) for name, dtype in frame.schema.items()]
    text = "## Format\n\n" + _table(["Column", "Type", "Description"], rows)
    if config.messages:
        example = [
            {"role": turn["role"], "content": _shorten(turn["content"], 400)} for turn in frame["messages"][0].to_list()
        ]
        body = json.dumps(example, indent=2, ensure_ascii=False)
        fence = _fence(body)
        text += (
            f"\n\nReasoning sits inside the assistant turn between {_code(config.think_open)} and "
            f"{_code(config.think_close)}, followed by the final answer. The first row's `messages` "
            f"(long turns shortened here):\n\n{fence}json\n{body}\n{fence}"
        )
    return text


def _funnel_section(run: Run, frame: pl.DataFrame) -> str:
    steps = run.steps
    if not steps:
        return ""
    chain = " → ".join(f"{_code(step.id)} {step.rows_out:,}" for step in steps)
    rows = []
    for number, step in enumerate(steps, 1):
        rejected = step.rejected
        seconds = step.seconds
        time = "cached" if step.status == "cached" else (f"{seconds:.1f} s" if seconds is not None else "")
        rows.append((
            str(number), _code(step.id), _code(step.op), f"{step.rows_in:,}", f"{step.rows_out:,}",
            f"{sum(rejected.values()):,}" if rejected else "", _reasons(rejected), time,
        ))
    unit = " (problems until generation, traces after it)" if any("generat" in s.op for s in steps) else ""
    text = (f"## How it was made\n\n### Funnel\n\nRows after each step{unit}:\n\n"
            f"{chain} → **{frame.height:,} published**\n\n")
    return text + _table(["#", "Step", "Operator", "Rows in", "Rows out", "Removed", "Removed because", "Time"], rows)


def _teachers_section(run: Run) -> str:
    frame = run.output
    if "teacher" not in frame.columns:
        return ""
    wanted = ["teacher", "model", "generation_params"]
    kept = frame.select(c for c in wanted if c in frame.columns)
    rejected = run.rejections(wanted)
    generated = pl.concat([kept, rejected], how="diagonal_relaxed") if "teacher" in rejected.columns else kept
    generated = generated.filter(pl.col("teacher").is_not_null())
    revisions = model_revisions(run)
    rows = []
    for teacher in _distinct(generated, "teacher"):
        mine = generated.filter(pl.col("teacher") == teacher)
        kept_rows = frame.filter(pl.col("teacher") == teacher).height
        models = _distinct(mine, "model")
        params = [_params_text(p) for p in _distinct(mine, "generation_params")]
        rows.append((
            _code(teacher),
            "<br>".join(_code(m) + (f" @ {_code(revisions[m])}" if revisions.get(m) else "") for m in models),
            f"{mine.height:,}", f"{kept_rows:,}", f"{kept_rows / mine.height:.0%}", "<br>".join(params),
        ))
    text = "### Teachers and sampling\n\n" + _table(
        ["Teacher", "Model", "Traces generated", "Kept", "Kept share", "Sampling parameters"], rows
    )
    totals = dict.fromkeys(_GENERATION_METRICS, 0)
    for step in run.steps:
        for name in _GENERATION_METRICS:
            totals[name] += round(step.metrics.get(name, 0) or 0)
    if totals["requests"] or totals["completion_tokens"]:
        text += (
            f"\n\nGeneration made {totals['requests']:,} model requests ({totals['cache_hits']:,} served from cache), "
            f"{totals['prompt_tokens']:,} prompt tokens and {totals['completion_tokens']:,} completion tokens."
        )
    return text


def _filters_section(run: Run) -> str:
    filters = [s for s in run.steps if s.can_reject(DUPLICATE_REASONS + CONTAMINATION_REASONS)]
    text = "### Deduplication and decontamination\n\n"
    if not filters:
        return text + (
            "No deduplication or decontamination step ran: check this data for overlap with your "
            "evaluation sets before reporting results on them."
        )
    items = []
    for step in filters:
        rejected = step.rejected
        removed = sum(rejected.values())
        line = f"- **{_code(step.id)}** ({_code(step.op)}): removed {removed:,} of {step.rows_in:,} rows"
        line += f" ({_reasons(rejected)})." if rejected else "."
        by_eval_set = _removed_by_eval_set(run, step.id)
        if by_eval_set:
            line += f" Removed per eval set: {_reasons(by_eval_set)}."
        settings = _settings(step.config)
        if settings:
            line += f" Settings: {settings}."
        items.append(line)
    return text + "\n".join(items)


def _removed_by_eval_set(run: Run, step_id: str) -> dict[str, int]:
    """Rejections of one step counted by the `eval_set` named in their reject_detail JSON."""
    rejected = run.rejections(["step", "reject_detail"])
    if not {"step", "reject_detail"} <= set(rejected.columns):
        return {}
    eval_sets = rejected.filter(pl.col("step") == step_id).select(
        pl.col("reject_detail").str.json_path_match("$.eval_set").alias("eval_set")
    ).drop_nulls()
    return dict(eval_sets.group_by("eval_set").len().iter_rows())


def _difficulty_section(frame: pl.DataFrame) -> str:
    if "band" not in frame.columns and "pass_rate" not in frame.columns:
        return ""
    text = "### Difficulty\n\n"
    if "band" in frame.columns:
        aggregations = [pl.len().alias("rows")]
        if "pass_rate" in frame.columns:
            aggregations.append(pl.col("pass_rate").mean().alias("mean_pass_rate"))
        bands = frame.group_by("band").agg(aggregations)
        bands = bands.sort("mean_pass_rate", descending=True) if "pass_rate" in frame.columns else bands.sort("band")
        rows = [
            (_code(row["band"]), f"{row['rows']:,}", f"{row['rows'] / frame.height:.0%}")
            + ((f"{row['mean_pass_rate']:.2f}" if row["mean_pass_rate"] is not None else "",)
               if "pass_rate" in frame.columns else ())
            for row in bands.iter_rows(named=True)
        ]
        headers = ["Band", "Rows", "Share"] + (["Mean pass rate"] if "pass_rate" in frame.columns else [])
        text += _table(headers, rows)
    if "pass_rate" in frame.columns:
        text += ("\n\nPass rate (share of the teachers' samples judged correct): "
                 + _stats_sentence(frame["pass_rate"], 2))
    return text


def _lengths_section(frame: pl.DataFrame) -> str:
    measures = []
    for name in ("reasoning_tokens", "answer_tokens"):
        if name in frame.columns:
            measures.append((_code(name), "tokens", frame[name]))
    if not measures:
        for name in ("reasoning", "answer_text"):
            if name in frame.columns:
                measures.append((_code(name), "characters", frame[name].str.len_chars()))
    if not measures:
        return ""
    rows = []
    for label, unit, values in measures:
        values = values.drop_nulls().cast(pl.Float64)
        if values.len() == 0:
            continue
        # polars types these statistics as any Python literal; on a Float64 series they are floats.
        rows.append((label, unit) + tuple(f"{v:,.0f}" for v in (  # type: ignore[str-bytes-safe]
            values.mean(), values.quantile(0.1), values.median(), values.quantile(0.9), values.max()
        )))
    return "### Lengths\n\n" + _table(["Field", "Unit", "Mean", "p10", "Median", "p90", "Max"], rows)


def _preference_section(run: Run, pairs: pl.DataFrame | None, config: PublishConfig, facts: CardFacts) -> str:
    """The `preference` config: how many pairs, why problems gave none, and how to train on it."""
    step = run.pairs_step()
    if step is None or not config.preference:
        return ""
    metrics = step.metrics
    published = pairs.height if pairs is not None else 0
    problems_paired = pairs["problem_id"].n_unique() if pairs is not None and "problem_id" in pairs.columns else 0
    settings = _settings(step.config) or "defaults"
    funnel = [
        ("Problems seen", int(metrics.get("problems", 0))),
        ("no verified correct trace", int(metrics.get("problems_no_correct", 0))),
        ("no verified wrong trace (after the final-line guard)", int(metrics.get("problems_no_wrong", 0))),
        ("no correct and wrong trace of one teacher", int(metrics.get("problems_no_same_teacher", 0))),
        ("**Problems with pairs**", problems_paired),
        ("Traces left out: undecided, unparseable or truncated", int(metrics.get("traces_excluded", 0))),
        ("Wrong traces refused: same text as a correct one but the final line",
         int(metrics.get("negatives_final_line_only", 0))),
        ("**Pairs published**", published),
    ]
    text = (
        "### Preference pairs\n\n"
        f"The `preference` config pairs, per problem, a verified correct trace (`chosen`) with a verified wrong "
        f"trace of the same problem (`rejected`), made by the step {_code(step.id)} ({settings}). Undecided and "
        "unparseable traces never take part. Each pair carries both trace ids (`chosen_trace_id`, "
        "`rejected_trace_id`).\n\n" + _table(["", "Count"], [(label, f"{value:,}") for label, value in funnel])
    )
    if pairs is None:
        return text
    rows = [(_code(name), _code(dtype), _text(PREFERENCE_DESCRIPTIONS.get(name, KNOWN_COLUMNS[name].description
                                                                         if name in KNOWN_COLUMNS else "")))
            for name, dtype in pairs.schema.items()]
    where = (f"{_py(config.hub_repo_id)}, revision={_py(facts.version)}" if config.hub_repo_id
             else _py(facts.local_path))
    code = (
        "from datasets import load_dataset\nfrom trl import DPOConfig, DPOTrainer\n\n"
        f'pairs = load_dataset({where}, "preference", split={_py(config.split)})\n'
        'trainer = DPOTrainer(model="HuggingFaceTB/SmolLM2-135M-Instruct", train_dataset=pairs,\n'
        '                     args=DPOConfig(output_dir="dpo-out"))\ntrainer.train()'
    )
    text += (
        f"\n\nIt is in the conversational form TRL's `DPOTrainer` reads as it is:\n\n{_fence(code)}python\n"
        f"{code}\n{_fence(code)}\n\n"
        + _table(["Column", "Type", "Description"], rows)
    )
    return text


def _sources_section(run: Run, config: PublishConfig) -> str:
    if not run.sources:
        return ""
    rows = [
        (
            _code(source.name or ""),
            _text(source.hub or source.path or ""),
            _text(source.format or ""),
            f"{source.rows:,}" if isinstance(source.rows, int) else "",
            _text(source.license or "unknown"),
            _code(str(source.sha256 or "")[:12]),
        )
        for source in run.sources
    ]
    return (
        "## Sources and licenses\n\n"
        + _table(["Source", "From", "Format", "Rows", "License", "sha256"], rows)
        + f"\n\nThis dataset is released under {_code(dataset_license(run, config))}. The reasoning and answers are "
        "outputs of the teacher models listed above: their licenses and terms of use apply to them as well."
    )


def _recipe_section(run: Run) -> str:
    recipe = run.recipe
    if not recipe.text:
        return ""
    fence = _fence(recipe.text)
    overrides = recipe.overrides
    override_text = f" with overrides {', '.join(_code(o) for o in overrides)}" if overrides else ""
    # Inside the HTML block Markdown is not read: the summary is escaped as HTML only.
    summary = html.escape(_one_line(recipe.path or "recipe"))
    return (
        f"## Recipe\n\nThe full recipe {_code(recipe.name or '')}{override_text} (sha256 {_code(recipe.sha256 or '')}):"
        f"\n\n<details>\n<summary>{summary}</summary>\n\n"
        f"{fence}yaml\n{recipe.text.rstrip()}\n{fence}\n\n</details>"
    )


def _lineage_section(frame: pl.DataFrame, pairs: pl.DataFrame | None = None) -> str:
    columns = [_code(c) for c in LINEAGE_COLUMNS if c in frame.columns]
    return (
        "## Lineage\n\n`lineage.json` (next to this card) records the recipe text and hash, every step's "
        "fingerprint, settings and row counts, the source files' hashes, the teacher models, the package "
        f"versions and the sha256 of each data file. Every row carries {_join(columns)}, so any row can be "
        "traced back to the run that made it."
    ) + (f" Every preference pair carries {_join(_code(c) for c in PAIR_LINEAGE_COLUMNS)}."
         if pairs is not None else "")


def _citation_section(run: Run, config: PublishConfig, facts: CardFacts) -> str:
    if config.citation:
        bibtex = config.citation.strip()
    else:
        year = facts.created_at[:4]
        name = config.hub_repo_id or _title(run, config)
        author = config.author or (config.hub_repo_id.split("/")[0] if config.hub_repo_id else "Unknown")
        where = f"https://huggingface.co/datasets/{config.hub_repo_id}" if config.hub_repo_id else facts.local_path
        bibtex = (
            f"@misc{{{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}_{year},\n"
            f"  title        = {{{{{_bib(_title(run, config))}}}}},\n"
            f"  author       = {{{_bib(author)}}},\n"
            f"  year         = {{{year}}},\n"
            f"  howpublished = {{\\url{{{_bib(where)}}}}},\n"
            f"  note         = {{Version {_bib(facts.version)}, fingerprint {facts.fingerprint}}}\n}}"
        )
    fence = _fence(bibtex)
    return (
        f"## Citation\n\n{fence}bibtex\n{bibtex}\n{fence}\n\n"
        "Please also cite the source datasets and the teacher models listed above."
    )


def _recipe_version(recipe: RecipeRecord) -> str:
    return f" (version {_text(recipe.version)})" if recipe.version not in (None, "") else ""


def _when(timestamp: str | None) -> str:
    """'2025-06-01T10:04:12+00:00' or '...Z' as '2025-06-01 10:04:12 UTC'."""
    return f"{timestamp[:10]} {timestamp[11:19]} UTC" if timestamp and len(timestamp) >= 19 else "unknown"


def _reasons(rejected: dict) -> str:
    ordered = sorted(rejected.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{_code(reason)} {count:,}" for reason, count in ordered)


def _params_text(params: str) -> str:
    try:
        parsed = json.loads(params)
    except json.JSONDecodeError:
        return _text(params)
    if not isinstance(parsed, dict):
        return _text(params)
    return _settings(dict(sorted(parsed.items())))


def model_revisions(run: Run) -> dict[str, str]:
    """model -> revision, from any dict in the steps' configs that names both."""
    revisions: dict[str, str] = {}

    def walk(value) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("model"), str) and value.get("revision"):
                revisions[value["model"]] = str(value["revision"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for step in run.steps:
        walk(step.config)
    return revisions


def _stats_sentence(values: pl.Series, digits: int) -> str:
    values = values.drop_nulls().cast(pl.Float64)
    if values.len() == 0:
        return "no values."
    parts = zip(
        ("mean", "min", "median", "max"), (values.mean(), values.min(), values.median(), values.max()), strict=True
    )
    # polars types these statistics as any Python literal; on a numeric series they are numbers.
    return ", ".join(f"{name} {value:.{digits}f}" for name, value in parts) + "."  # type: ignore[str-bytes-safe]


def _distinct(frame: pl.DataFrame, column: str) -> list:
    if column not in frame.columns:
        return []
    return sorted(frame[column].drop_nulls().unique().to_list())


def _settings(config: dict) -> str:
    """`key=value, ...`, each value shortened: keys may come from data too (sampling parameters)."""
    return ", ".join(f"{_text(key)}={_setting(value)}" for key, value in config.items())


def _setting(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return _text(_shorten(text, 120))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _one_line(text) -> str:
    return " ".join(str(text).split())


# Characters that start Markdown syntax inside a line (code, emphasis, links and images,
# strikethrough, table cells); '<' and '&' are escaped as HTML. An underscore inside a
# word starts no emphasis (CommonMark), so `eval_sets` stays as it is.
_MARKDOWN = re.compile(r"([\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _text(text) -> str:
    """Data as plain text on one line, in prose or a table cell: no Markdown syntax, no HTML
    (a '<think>' or an '<img ...>' is shown, not read as a tag)."""
    return html.escape(_MARKDOWN.sub(r"\\\1", _one_line(text)), quote=False)


def _code(text) -> str:
    """Data as a code span on one line: fenced by more backticks than it holds, so it cannot
    close the span early; inside a span HTML is shown, not read."""
    body = _one_line(text)
    if not body:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _py(text) -> str:
    """A Python string literal (for the code blocks that show how to load the data)."""
    return json.dumps(str(text), ensure_ascii=False)


def _bib(text) -> str:
    """A BibTeX field value: braces and backslashes that would end or change it escaped."""
    return re.sub(r"([{}\\])", r"\\\1", _one_line(text))


def _join(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _fence(body: str) -> str:
    """A backtick fence longer than any backtick run inside `body`, so it cannot be closed early."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _table(headers: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    # A pipe in a cell (a code span's too) would end the cell; tables read an escaped one as text.
    lines += ["| " + " | ".join(_UNESCAPED_PIPE.sub(r"\\|", cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
# Code (fenced blocks, inline spans) or a '<' outside it.
_CODE_OR_TAG = re.compile(r"(```.*?```|`[^`\n]*`)|<", re.DOTALL)


def _markdown_without_html(text: str) -> str:
    """The recipe's own Markdown with raw HTML shown, not read: '<' is escaped outside code,
    where Markdown already shows it as written."""
    return _CODE_OR_TAG.sub(lambda match: match.group(1) or "&lt;", text)
