"""Semantic dedup: curate's `semantic_dedup` vs semhash, same data, same encoders, one process.

    python bench/dedup.py                          # 10k rows: MiniLM and static; 100k: static
    python bench/dedup.py --sizes 1000000 --encoders static --tools curate
    python bench/dedup.py --data /path/to/data     # GSM8K/MATH jsonl files under this folder
    python bench/dedup.py --trace-rows 100000 --group-size 1000   # trace_dedup (MinHash LSH) alone

The pool: real problems (GSM8K, MATH-500; by default the samples bundled in curate/data),
distinct synthetic problems made by recombining sentences of different real problems,
and planted duplicates (~10% of rows) of both: light perturbations (case, whitespace,
punctuation, number format, a prefix/suffix, a typo, a dropped word) and rule-based
paraphrases (synonyms, question moved first). Both tools get the same model object
(all-MiniLM-L6-v2 bundled, or a model2vec static model distilled from it here; semhash
encodes the static model with model2vec, curate with its bulk encoder, same vectors)
and the same cosine threshold. Scores: rows/s end to end (embed + index + clusters; model load
excluded, embedding cache cold), peak RSS above the pre-run level (each tool in a fresh
process by default: memory one tool's run leaves with the allocator would otherwise be the
next tool's baseline; --same-process restores the old one-process run), and
precision/recall/F1 of the removed rows against the planted groups (a group of g rows
should lose g - 1; removing a row of no group, or more than g - 1 of one, is a false
positive).
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

from curate.core.operator import StepContext
from curate.dedup.embed import STATIC_MINILM, Embedder
from curate.dedup.operators import SemanticDedup

REPO_DATA = Path(__file__).resolve().parent.parent / "curate" / "data"
SYNONYMS = {
    "how many": "what number of", "buys": "purchases", "bought": "purchased", "total": "overall",
    "each": "every", "find": "determine", "compute": "calculate", "what is": "what's", "has": "owns",
    "gets": "receives", "needs": "requires", "makes": "earns", "costs": "is priced at", "large": "big",
    "small": "little", "store": "shop", "money": "cash", "days": "days' time", "begins": "starts",
}


def read_problems(data: Path) -> list[str]:
    texts = []
    for path in sorted(data.rglob("*.jsonl")):
        if "traces" in path.parts or "code" in path.parts:
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            text = record.get("problem") or record.get("question")
            if isinstance(text, str) and text.strip():
                texts.append(text.strip())
    return list(dict.fromkeys(texts))


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", text) if len(s) > 15]


def synthetic(real: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Distinct problems: 3-4 sentences from different real problems, numbers redrawn."""
    pool = [s for text in real for s in sentences(text)]
    picks = rng.integers(0, len(pool), size=(count, 4))
    lengths = rng.integers(3, 5, size=count)
    out = []
    for row, length in zip(picks, lengths, strict=True):
        text = " ".join(pool[i] for i in row[:length])
        out.append(re.sub(r"\d+", lambda m: str(rng.integers(2, 999)), text))
    return out


def perturb(text: str, rng: np.random.Generator) -> str:
    kind = rng.integers(0, 8)
    if kind == 0:
        return text.lower() if rng.random() < 0.5 else text.upper()
    if kind == 1:
        return re.sub(r"\s+", lambda m: "  " if rng.random() < 0.3 else " ", text).replace(",", " ,")
    if kind == 2:
        return re.sub(r"\b(\d)(\d{3})\b", r"\1,\2", text) + " "
    if kind == 3:
        return ["Question: ", "Solve: ", "Problem. "][rng.integers(0, 3)] + text
    if kind == 4:
        return text + [" Show your work.", " Answer with a number.", " Explain."][rng.integers(0, 3)]
    words = text.split(" ")
    if kind == 5 and len(words) > 6:
        i = rng.integers(0, len(words))
        if len(words[i]) > 3:
            w = words[i]
            words[i] = w[:1] + w[2] + w[1] + w[3:]
        return " ".join(words)
    if kind == 6 and len(words) > 8:
        del words[rng.integers(1, len(words) - 1)]
        return " ".join(words)
    return paraphrase(text, rng)


def paraphrase(text: str, rng: np.random.Generator) -> str:
    out = text
    for source, target in SYNONYMS.items():
        if source in out.lower() and rng.random() < 0.8:
            out = re.sub(re.escape(source), target, out, flags=re.IGNORECASE)
    parts = sentences(out)
    if len(parts) > 2 and rng.random() < 0.5:  # the question first
        out = " ".join([parts[-1]] + parts[:-1])
    return out if out != text else "Please answer: " + text


def make_pool(real: list[str], size: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    planted_rows = size // 10
    base_count = size - planted_rows
    base = real[:base_count] + synthetic(real, max(0, base_count - len(real)), rng)
    origins = rng.integers(0, len(base), size=planted_rows)
    copies = [perturb(base[i], rng) for i in origins]
    frame = pl.DataFrame({
        "problem": base + copies,
        "group": list(range(len(base))) + origins.tolist(),
    })
    frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    return frame.with_columns(problem_id=pl.format("r{}", pl.int_range(pl.len())))


def score(frame: pl.DataFrame, removed: set[str]) -> dict:
    groups = frame.select("problem_id", "group").with_columns(
        size=pl.len().over("group"), removed=pl.col("problem_id").is_in(list(removed)))
    per_group = groups.group_by("group").agg(pl.col("size").first(), pl.col("removed").sum())
    should = (per_group["size"] - 1).sum()
    true_positive = per_group.select(pl.min_horizontal(pl.col("removed"), pl.col("size") - 1).sum()).item()
    precision = true_positive / len(removed) if removed else 1.0
    recall = true_positive / should if should else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "removed": len(removed), "planted": int(should)}


class PeakRss:
    """Peak resident memory above the level at start, sampled every 20 ms."""

    def __enter__(self):
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class SharedEncoder:
    """The encoder handed to semhash: the very model and batch size curate uses. A
    static model goes to semhash as the model2vec `StaticModel` itself (semhash's own
    kind of model, encoded its usual way), not through curate's bulk encoder."""

    def __init__(self, embedder: Embedder, batch_size: int):
        self._encode, self._batch_size = embedder._encode, batch_size

    def encode(self, texts, **_):
        return self._encode(list(texts), self._batch_size)


def semhash_encoder(embedder: Embedder, batch_size: int):
    return getattr(embedder._encode, "model", None) or SharedEncoder(embedder, batch_size)


def run_curate(frame: pl.DataFrame, model: str, threshold: float, bench_cache: Path) -> set[str]:
    with tempfile.TemporaryDirectory() as cold:
        # The static model lives in bench_cache/models (made once); the embedding cache is cold.
        ctx = StepContext(step_id="bench", step_dir=Path(cold), cache_dir=Path(cold))
        if model == STATIC_MINILM:
            (Path(cold) / "models").symlink_to(bench_cache / "models")
        op = SemanticDedup(SemanticDedup.Config(model=model, threshold=threshold))
        op.setup(ctx)
        out = op.apply(frame, ctx)
    return set(out.filter(pl.col("reject_reason").is_not_null())["problem_id"])


def run_semhash(frame: pl.DataFrame, encoder, threshold: float) -> set[str]:
    from semhash import SemHash

    records = frame.select(id="problem_id", text="problem").to_dicts()
    result = SemHash.from_records(records, columns=["text"], model=encoder).self_deduplicate(threshold=threshold)
    return {duplicate.record["id"] for duplicate in result.filtered}


def trace_pool(rows: int, group_size: int, seed: int = 0) -> pl.DataFrame:
    """bench/prune.py's synthetic traces (~800 tokens, sentences drawn from a small pool, so
    traces of one problem share many shingles), regrouped `group_size` per problem, with 5 %
    planted near-copies (a trace of the same problem with one sentence dropped and a word
    changed), marked by `copy_of`."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prune import synthetic_chunk

    rng = np.random.default_rng(seed)
    planted = rows // 20
    base = synthetic_chunk(rows - planted, seed, 0).with_columns(
        problem_id=pl.format("p{}", pl.int_range(pl.len()) // group_size), copy_of=pl.lit(None, pl.String))
    sources = base.gather(rng.integers(0, base.height, planted))
    edited = [re.sub(r"\b(the)\b", "this", re.sub(r"^[^.]*\.\s*", "", text), count=1)
              for text in sources["completion"].to_list()]
    copies = sources.with_columns(
        completion=pl.Series(edited), copy_of=pl.col("trace_id"),
        trace_id=pl.format("c{}", pl.int_range(pl.len())))
    return pl.concat([base, copies]).select("problem_id", "trace_id", "completion", "copy_of")


def bench_trace_dedup(rows: int, group_size: int) -> dict:
    """trace_dedup (minhash, defaults) on trace_pool: seconds, peak RSS of the step above
    the level after building the pool, recall of planted copies, other rows removed."""
    from curate.dedup.operators import TraceDedup

    frame = trace_pool(rows, group_size)
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp, PeakRss() as memory:
        started = time.perf_counter()
        ctx = StepContext(step_id="bench", step_dir=Path(tmp), cache_dir=Path(tmp))
        out = TraceDedup(TraceDedup.Config()).apply(frame, ctx)
        seconds = time.perf_counter() - started
    removed = out.filter(pl.col("reject_reason").is_not_null())
    copies = frame.filter(pl.col("copy_of").is_not_null())
    # A planted pair counts as found when either member was removed.
    found = copies.filter(pl.col("trace_id").is_in(removed["trace_id"]) | pl.col("copy_of").is_in(removed["trace_id"]))
    return {"tool": "curate trace_dedup", "rows": rows, "group_size": group_size, "seconds": round(seconds, 1),
            "peak_mib": round(memory.mib), "pool_mib": round(frame.estimated_size() / 2**20),
            "planted_recall": round(found.height / copies.height, 3), "removed": removed.height,
            "planted": copies.height}


def run_isolated(args: argparse.Namespace, encoder_name: str, size: int, tool: str) -> dict:
    """One tool's row from a fresh process (same pool, model loaded before its timing)."""
    command = [sys.executable, __file__, "--sizes", str(size), "--encoders", encoder_name, "--tools", tool,
               "--minilm-max", str(size), "--threshold", str(args.threshold), "--data", str(args.data),
               "--cache", str(args.cache)]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    return json.loads(next(line for line in lines if line.startswith("{")))


def measure(frame: pl.DataFrame, tool: str, encoder_name: str, model: str, shared, args: argparse.Namespace) -> dict:
    """One tool's row, run in this process: seconds, peak RSS above the start, scores."""
    gc.collect()
    with PeakRss() as memory:
        started = time.perf_counter()
        if tool == "curate":
            removed = run_curate(frame, model, args.threshold, args.cache)
        else:
            removed = run_semhash(frame, shared, args.threshold)
        seconds = time.perf_counter() - started
    return {"tool": tool, "encoder": encoder_name, "rows": frame.height, "seconds": round(seconds, 1),
            "rows_per_s": round(frame.height / seconds), "peak_mib": round(memory.mib),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in score(frame, removed).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated pool sizes")
    parser.add_argument("--encoders", default="minilm,static", help="minilm and/or static")
    parser.add_argument("--minilm-max", type=int, default=10_000, help="largest size run with MiniLM (slow on CPU)")
    parser.add_argument("--tools", default="curate,semhash")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--data", type=Path, default=REPO_DATA, help="folder with GSM8K/MATH *.jsonl files")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-dedup")
    parser.add_argument("--same-process", action="store_true",
                        help="run all tools in this process (the later tools start on a warmed allocator)")
    parser.add_argument("--trace-rows", type=int, default=0,
                        help="run the trace_dedup bench on this many traces instead")
    parser.add_argument("--group-size", type=int, default=1000, help="trace bench: traces per problem")
    args = parser.parse_args()
    if args.trace_rows:
        print(json.dumps(bench_trace_dedup(args.trace_rows, args.group_size)))
        return

    real = read_problems(args.data)
    print(f"real problems: {len(real)} from {args.data}")
    tools = args.tools.split(",")
    isolate = len(tools) > 1 and not args.same_process
    models = {"minilm": "bundled:minilm", "static": STATIC_MINILM}
    rows = []
    for encoder_name in args.encoders.split(","):
        model = models[encoder_name]
        if not isolate:
            started = time.perf_counter()
            embedder = Embedder(model, args.cache)  # loads (and for static, distils once) outside the timings
            shared = semhash_encoder(embedder, SemanticDedup.Config().batch_size)
            print(f"{encoder_name}: model ready in {time.perf_counter() - started:.1f}s")
        for size in (int(s) for s in args.sizes.split(",")):
            if encoder_name == "minilm" and size > args.minilm_max:
                continue
            frame = None if isolate else make_pool(real, size)
            for tool in tools:
                if frame is None:
                    row = run_isolated(args, encoder_name, size, tool)
                else:
                    row = measure(frame, tool, encoder_name, model, shared, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = pl.DataFrame(rows)
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200):
        print(table)


if __name__ == "__main__":
    main()
