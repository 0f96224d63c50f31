"""Prune stage throughput: every rule filter + per-problem selection on synthetic traces of
realistic length (default 1 M rows, ~800 tokens each, processed in runner-sized chunks),
side by side with Data-Juicer on the same rows and the same checks; and, with --traces,
what each operator removes from a real SkyThought output file and what it does to the
verified-correct rate.

The Data-Juicer comparison runs the same two checks on both sides: a length bound of
16..16,384 SmolLM2 tokens (Data-Juicer's token_num_filter with the SmolLM2 tokenizer;
curate's length_filter on token counts made by the same tokenizer, as `generate` records
them) and word 20-gram repetition (Data-Juicer's word_repetition_filter, max ratio 0.3;
curate's repetition_filter with its repeated-lines check switched off, since Data-Juicer
has no such check). Data-Juicer's character_repetition_filter has no curate counterpart
and is left out. Tokenizing is part of Data-Juicer's length check and not of curate's (the
counts come with the traces), so curate's time is given both alone and with the
tokenizer pass added. The two sides' repetition measures differ in definition (Data-
Juicer: share of n-gram occurrences whose n-gram occurs more than once, lower-cased,
punctuation stripped; curate: share of occurrences repeating an earlier one), so the
rows kept by each side, and those kept by only one, are reported.

    python bench/prune.py                                  # synthetic, 1 M rows
    python bench/prune.py --dj-python /tmp/dj-venv/bin/python
    python bench/prune.py --rows 0 --traces ../shared/data/traces/math500_skyt1_27b_longcot.jsonl

Data-Juicer runs in its own virtualenv (it pins packages that clash with ours), in a
subprocess given the same rows as a parquet file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from curate.core.operator import StepContext, split_rejections
from curate.prune import filters as F
from curate.prune.steps import PruneSteps
from curate.select.operators import SelectTraces
from curate.sources.skythought import read_skythought

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "prune" / "skyt1_longcot_subset.jsonl"
RULE_FILTERS = [F.TruncationFilter, F.AnswerMissingFilter, F.LengthFilter, F.RepetitionFilter,
                F.LanguageMixFilter, F.HesitationFilter, F.AnswerConsistencyFilter]
# the checks Data-Juicer runs too: length bounds (tokens) and word n-gram repetition only
DJ_EQUIVALENT = [(F.LengthFilter, {"min_tokens": 16, "max_tokens": 16384}),
                 (F.RepetitionFilter, {"ngram": 20, "max_ngram_share": 0.3, "max_line_share": 1.0})]

_SENTENCES = [
    "Let me start by writing down what the problem gives us.",
    "We know that the sum of the first n integers is n(n+1)/2, so we can use that here.",
    "Substituting x = {a} into the equation gives {b}.",
    "Wait, I should double-check that step before moving on.",
    "Hmm, that does not look right, so let me recompute the product {a} times {b}.",
    "The derivative of the function is zero when x equals {a}.",
    "So the area of the triangle is one half times base times height, which is {b}.",
    "Another way is to factor the quadratic as (x - {a})(x + {b}).",
    "This means the remainder when dividing by {a} must be {b}.",
    "Therefore the number of ways to choose the committee is {b}.",
    "A smaller case with n = {a} shows the same pattern holds.",
    "Since the angles of a triangle add up to 180 degrees, the third angle is {b} degrees.",
    "Checking the boundary values, both endpoints satisfy the inequality.",
    "Now I need to combine these two results into a single expression.",
    "The probability is the number of favourable outcomes over the total, {a} over {b}.",
]


def _sentence_pool(seed: int) -> pl.Series:
    rng = np.random.default_rng(seed)
    pool = []
    for template in _SENTENCES:
        for _ in range(40):
            text = template.format(a=rng.integers(2, 99), b=rng.integers(100, 9999))
            pool.append(text + ("\n\n" if rng.random() < 0.3 else " "))
    return pl.Series(pool)


def synthetic_chunk(rows: int, seed: int, start: int) -> pl.DataFrame:
    """`rows` traces: ~40 sentences (~800 tokens) of reasoning each, 8 traces per problem,
    with 3% truncated, 2% looping, 1% hesitation-heavy, 0.5% language-mixed rows."""
    rng = np.random.default_rng(seed)
    pool = _sentence_pool(seed)
    lengths = rng.integers(10, 70, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    picks = pool.gather(rng.integers(0, len(pool), int(offsets[-1])))
    sentences = pl.Series(pa.LargeListArray.from_arrays(pa.array(offsets), picks.to_arrow()))
    kind = rng.random(rows)
    answers = rng.integers(1, 1000, rows).astype(str)
    frame = pl.DataFrame({
        "reasoning": sentences.list.join(""),
        "kind": kind,
        "answer": answers,
        "index": np.arange(start, start + rows),
    })
    loop = "Let me reconsider whether the remainder really is the value I found before.\n"
    frame = frame.with_columns(
        reasoning=pl.when(pl.col("kind") < 0.02).then(pl.col("reasoning") + pl.lit(loop * 40))
        .when(pl.col("kind") < 0.03)
        .then(pl.col("reasoning") + pl.lit("Wait, hmm. Wait. Hmm, let me double-check. " * 20))
        .when(pl.col("kind") < 0.035)
        .then(pl.col("reasoning") + pl.lit("所以我们需要重新计算这个结果，然后检查每一步是否正确。" * 10))
        .otherwise(pl.col("reasoning"))
        + pl.format("\n\nSo the answer is {}.", pl.col("answer")),
    )
    truncated = (pl.col("kind") >= 0.035) & (pl.col("kind") < 0.065)
    answer_text = pl.concat_str(pl.lit("The final answer is \\boxed{"), pl.col("answer"), pl.lit("}."))
    return frame.select(
        problem_id=pl.format("p{}", pl.col("index") // 8),
        trace_id=pl.format("t{}", pl.col("index")),
        teacher=pl.when(pl.col("index") % 2 == 0).then(pl.lit("a")).otherwise(pl.lit("b")),
        reasoning=pl.col("reasoning"),
        answer_text=pl.when(truncated).then(pl.lit("")).otherwise(answer_text),
        completion=pl.when(truncated).then(pl.concat_str(pl.lit("<think>"), pl.col("reasoning")))
        .otherwise(pl.concat_str(pl.lit("<think>"), pl.col("reasoning"), pl.lit("</think>"), answer_text)),
        finish_reason=pl.when(truncated).then(pl.lit("length")).otherwise(pl.lit("stop")),
        reasoning_tokens=(pl.col("reasoning").str.len_bytes() // 4).cast(pl.Int32),
        answer_tokens=pl.lit(12, pl.Int32),
        reference_answer=pl.col("answer"),
        correct=pl.col("kind") > 0.4,
    )


def context(tmp: Path) -> StepContext:
    return StepContext(step_id="bench", step_dir=tmp, cache_dir=tmp / "cache")


def run_filters(frame: pl.DataFrame, classes, tmp: Path) -> tuple[pl.DataFrame, dict[str, int]]:
    """Filters one after another, rejected rows removed between them, as a recipe runs;
    `classes` holds filter classes or (class, config fields) pairs."""
    rejected = {}
    for entry in classes:
        cls, fields = entry if isinstance(entry, tuple) else (entry, {})
        kept, rejections = split_rejections(cls(cls.Config(**fields)).apply(frame, context(tmp)))
        rejected[cls.name] = rejections.height
        frame = kept
    return frame, rejected


def bench_synthetic(rows: int, chunk: int, tmp: Path) -> tuple[float, dict]:
    filter_seconds, generated, survivors, rejected = 0.0, 0, [], {}
    for number, start in enumerate(range(0, rows, chunk)):
        frame = synthetic_chunk(min(chunk, rows - start), seed=number, start=start)
        generated += frame.height
        began = time.perf_counter()
        kept, counts = run_filters(frame, RULE_FILTERS, tmp)
        filter_seconds += time.perf_counter() - began
        for name, count in counts.items():
            rejected[name] = rejected.get(name, 0) + count
        # Selection reads only these columns for shortest_correct; keeping the text of
        # all kept rows until the end is what the runner's global step would do too.
        survivors.append(kept.select("problem_id", "trace_id", "reasoning_tokens", "answer_tokens", "correct"))
    kept = pl.concat(survivors)
    began = time.perf_counter()
    selected, selection = split_rejections(SelectTraces(SelectTraces.Config(k=1)).apply(kept, context(tmp)))
    select_seconds = time.perf_counter() - began
    rejected["select_traces"] = selection.height
    total = filter_seconds + select_seconds
    return generated / total, {
        "rows": generated, "filter_s": round(filter_seconds, 1), "select_s": round(select_seconds, 1),
        "kept": selected.height, "rejected": rejected,
    }


DJ_SCRIPT = """
import json, sys, time
import polars as pl
from data_juicer.core.data import NestedDataset
from data_juicer.ops.filter import TokenNumFilter, WordRepetitionFilter
rows = pl.read_parquet(sys.argv[1]).to_dicts()
dataset = NestedDataset.from_list(rows)
began = time.perf_counter()
for op in (TokenNumFilter(hf_tokenizer=sys.argv[2], min_num=16, max_num=16384),
           WordRepetitionFilter(rep_len=20, max_ratio=0.3)):
    dataset = op.run(dataset)
print(json.dumps({"seconds": time.perf_counter() - began, "kept": sorted(dataset["index"])}))
"""


def smollm2_tokenizer(tmp: Path):
    """The bundled SmolLM2 tokenizer, also saved as a plain folder Data-Juicer can load."""
    from transformers import AutoTokenizer

    from curate.models.bundled import smollm2_gguf

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(tmp / "smollm2-tokenizer")
    return tokenizer, tmp / "smollm2-tokenizer"


def bench_data_juicer(dj_python: str, rows: int, repeats: int, tmp: Path) -> dict:
    frame = synthetic_chunk(rows, seed=0, start=0).with_row_index("index")
    tokenizer, tokenizer_dir = smollm2_tokenizer(tmp)
    # token counts as generation records them: the completion's reasoning and answer parts
    began = time.perf_counter()
    reasoning = [len(ids) for ids in tokenizer(frame["reasoning"].to_list(), add_special_tokens=False)["input_ids"]]
    answer = [len(ids) for ids in tokenizer(frame["answer_text"].to_list(), add_special_tokens=False)["input_ids"]]
    tokenize_seconds = time.perf_counter() - began
    frame = frame.with_columns(reasoning_tokens=pl.Series(reasoning, dtype=pl.Int32),
                               answer_tokens=pl.Series(answer, dtype=pl.Int32))
    path = tmp / "dj_rows.parquet"
    frame.select("index", text=pl.col("completion")).write_parquet(path)
    script = tmp / "dj_bench.py"
    script.write_text(DJ_SCRIPT)
    ours_seconds, dj_seconds, all_seconds = [], [], []
    for repeat in range(repeats):
        for side in (("ours", "dj") if repeat % 2 == 0 else ("dj", "ours")):  # alternate who goes first
            if side == "ours":
                began = time.perf_counter()
                ours, _ = run_filters(frame, DJ_EQUIVALENT, tmp)
                ours_seconds.append(time.perf_counter() - began)
                began = time.perf_counter()
                run_filters(frame, RULE_FILTERS, tmp)
                all_seconds.append(time.perf_counter() - began)
            else:
                done = subprocess.run([dj_python, str(script), str(path), str(tokenizer_dir)],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    lines = done.stderr.strip().splitlines()
                    return {"error": lines[-1] if lines else f"exit {done.returncode}"}
                dj = json.loads(done.stdout.strip().splitlines()[-1])
                dj_seconds.append(dj["seconds"])
    ours_kept, dj_kept = set(ours["index"].to_list()), set(dj["kept"])
    ours_best, dj_best = min(ours_seconds), min(dj_seconds)
    return {
        "rows": rows, "repeats": repeats,
        "dj_s": [round(x, 2) for x in dj_seconds], "ours_equivalent_s": [round(x, 2) for x in ours_seconds],
        "ours_all_rule_filters_s": [round(x, 2) for x in all_seconds], "tokenize_s": round(tokenize_seconds, 2),
        "dj_rows_per_s": round(rows / dj_best), "ours_equivalent_rows_per_s": round(rows / ours_best),
        "ratio_equivalent": round(dj_best / ours_best, 1),
        "ratio_equivalent_with_tokenizing": round(dj_best / (ours_best + tokenize_seconds), 1),
        "ratio_all_rule_filters": round(dj_best / min(all_seconds), 1),
        "kept_dj": len(dj_kept), "kept_ours": len(ours_kept), "kept_both": len(ours_kept & dj_kept),
        "kept_only_dj": len(dj_kept - ours_kept), "kept_only_ours": len(ours_kept - dj_kept),
    }


def real_report(path: Path, tmp: Path) -> None:
    """Tokens each operator removes from real traces, and the correct rate of what stays.

    Each operator runs alone on the full file (what it removes by itself), then all of
    them in sequence (what a recipe would keep)."""
    frame = read_skythought(path, path.stem, tokenizer="bundled:smollm2")
    tokens = lambda f: int(f.select((pl.col("reasoning_tokens") + pl.col("answer_tokens")).sum()).item())  # noqa: E731
    print(f"\n{path.name}: {frame.height} traces, {tokens(frame)} tokens (SmolLM2 tokenizer), "
          f"correct rate {frame['correct'].mean():.3f}")
    print(f"{'operator':28} {'rejected':>8} {'tokens removed':>15} {'share':>6} {'kept correct rate':>18}")
    for cls in RULE_FILTERS:
        ctx = context(tmp)
        kept, rejected = split_rejections(cls(cls.Config()).apply(frame, ctx))
        print(f"{cls.name:28} {rejected.height:8} {ctx.metrics['tokens_removed']:15} "
              f"{ctx.metrics['tokens_removed'] / tokens(frame):6.1%} {kept['correct'].mean():18.3f}")
    ctx = context(tmp)
    pruned = PruneSteps(PruneSteps.Config()).apply(frame, ctx)
    print(f"{'prune_steps':28} {0:8} {ctx.metrics['tokens_removed']:15} "
          f"{ctx.metrics['tokens_removed'] / tokens(frame):6.1%} {pruned['correct'].mean():18.3f}"
          f"   ({ctx.metrics['traces_pruned']} traces cut; hesitations {ctx.metrics['hesitations_before']}"
          f" -> {ctx.metrics['hesitations_after']})")
    kept, _ = run_filters(frame, RULE_FILTERS, tmp)
    ctx = context(tmp)
    final = PruneSteps(PruneSteps.Config()).apply(kept, ctx)
    print(f"{'all rule filters + prune':28} {frame.height - final.height:8} {tokens(frame) - tokens(final):15} "
          f"{1 - tokens(final) / tokens(frame):6.1%} {final['correct'].mean():18.3f}   ({final.height} traces kept)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic trace rows (0: skip)")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per batch, as the runner chunks")
    parser.add_argument("--dj-python", help="python of a virtualenv with py-data-juicer installed")
    parser.add_argument("--dj-rows", type=int, default=20_000, help="rows for the Data-Juicer comparison")
    parser.add_argument("--dj-repeats", type=int, default=3, help="alternating runs of each side (best kept)")
    parser.add_argument("--traces", type=Path, help=f"SkyThought output file to report on (default {FIXTURE.name})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.rows:
            rate, info = bench_synthetic(args.rows, args.chunk, tmp)
            print(f"rule filters + select_traces: {rate:,.0f} rows/s  {json.dumps(info)}")
        if args.dj_python:
            comparison = bench_data_juicer(args.dj_python, args.dj_rows, args.dj_repeats, tmp)
            print(f"Data-Juicer comparison: {json.dumps(comparison)}")
        real_report(args.traces or FIXTURE, tmp)


if __name__ == "__main__":
    sys.exit(main())
