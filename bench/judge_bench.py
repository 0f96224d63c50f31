"""The LLM judge measured with a bundled model on CPU (issues 17 and 18).

    PYTHONPATH=. python bench/judge_bench.py agreement --items 60       # verdicts vs real labels (set C)
    PYTHONPATH=. python bench/judge_bench.py throughput --items 16 --repeats 2
    PYTHONPATH=. python bench/judge_bench.py confirm --per-class 30     # decontamination confirmation (set A)

Model: bundled:smollm2 (SmolLM2-135M-Instruct) on `transformers`, greedy, 48 new tokens,
texts cut to their last 1,500 characters. Every figure goes through the operators' and
the judge's Python API; each run has its own fresh cache directory (no reuse between runs).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
from common import DATA, load  # noqa: E402

from curate.core.operator import StepContext  # noqa: E402
from curate.llm.judge import Judge, JudgeConfig  # noqa: E402

TEACHER = {"backend": "transformers", "model": "bundled:smollm2",
           "sampling": {"max_tokens": 48}, "options": {"batch_size": 8}}


# Every step folder and cache lives under one folder that is removed when the bench exits.
_WORK = tempfile.TemporaryDirectory(prefix="judge-bench-")


def context(name: str) -> StepContext:
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_WORK.name))
    return StepContext(step_id=name, step_dir=root / "step", cache_dir=root / "cache")


def judge_config() -> JudgeConfig:
    return JudgeConfig(teacher=TEACHER, max_chars=1500)


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {hits / total:.1%}" if total else "0/0"


def agreement(items: int, seed: int) -> dict:
    """Task 'answer' on real Qwen2.5-14B outputs of MATH-500 (set C heldout, classes whose
    label is the careful real label or follows from it), half labelled correct, half not."""
    rows = [r for r in load("verify_rows", "heldout") if r["teacher"] == "qwen25_14b"]
    rng = random.Random(seed)
    good = rng.sample([r for r in rows if r["label"]], items // 2)
    bad = rng.sample([r for r in rows if not r["label"]], items - items // 2)
    chosen = good + bad
    frame = pl.DataFrame({"judge_problem": [r["problem"] for r in chosen],
                          "judge_reference": [r["reference"] for r in chosen],
                          "judge_response": [r["completion"] for r in chosen]})
    judge = Judge(judge_config(), "answer")
    ctx = context("agreement")
    judge.setup(ctx)
    started = time.perf_counter()
    out = judge.judge(frame, ctx)
    seconds = time.perf_counter() - started
    judge.teardown()
    labels = [r["label"] for r in chosen]
    ok = [i for i, s in enumerate(out["judge_status"]) if s == "ok"]
    agree = sum(out["judge_verdict"][i] == labels[i] for i in ok)
    yes = sum(bool(out["judge_verdict"][i]) for i in ok)
    return {"task": "answer", "model": TEACHER["model"], "items": len(chosen), "labels_true": sum(labels),
            "statuses": dict(out["judge_status"].value_counts().iter_rows()),
            "agreement_of_all_items": rate(agree, len(chosen)), "agreement_where_parsed": rate(agree, len(ok)),
            "said_yes_where_parsed": rate(yes, len(ok)), "seconds": round(seconds, 1),
            "replies_sample": [r for r in _replies(ctx)[:3]]}


def _replies(ctx: StepContext) -> list[str]:
    import sqlite3

    db = sqlite3.connect(ctx.cache_dir / "generate" / "responses.sqlite")
    return [json.loads(r[0])["text"][:200] for r in db.execute("SELECT result FROM completions LIMIT 5")]


def throughput(items: int, repeats: int) -> dict:
    """Items/s of Judge.judge vs the same requests through the teacher engine's raw
    generate (same backend, prompts, sampling), alternating order, fresh caches."""
    from curate.llm.engine import Engine

    rows = load("verify_rows", "heldout")[:items]
    frame = pl.DataFrame({"judge_problem": [r["problem"] for r in rows],
                          "judge_reference": [r["reference"] for r in rows],
                          "judge_response": [r["completion"] for r in rows]})
    judge = Judge(judge_config(), "answer")
    raw_frame = judge.requests_frame(frame)
    times: dict[str, list[float]] = {"judge": [], "raw_generate": []}
    for repeat in range(repeats):
        order = ["judge", "raw_generate"] if repeat % 2 == 0 else ["raw_generate", "judge"]
        for kind in order:
            ctx = context(kind)
            if kind == "judge":
                judge.setup(ctx)
                judge._engine.backends[judge.teacher.name].load()  # model load outside the timing, as below
                started = time.perf_counter()
                judge.judge(frame, ctx)
                times[kind].append(time.perf_counter() - started)
                judge.teardown()
            else:
                engine = Engine([judge.teacher])
                engine.setup(ctx)
                engine.backends[judge.teacher.name].load()
                started = time.perf_counter()
                engine.generate(raw_frame, ctx)
                times[kind].append(time.perf_counter() - started)
                engine.teardown()
            print(kind, round(times[kind][-1], 2), flush=True)
    judge_rate = items / statistics.median(times["judge"])
    raw_rate = items / statistics.median(times["raw_generate"])
    return {"items": items, "repeats": repeats, "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
            "judge_items_per_s": round(judge_rate, 3), "raw_items_per_s": round(raw_rate, 3),
            "ratio_judge_over_raw": round(judge_rate / raw_rate, 3)}


def confirm(per_class: int, seed: int, top_k: int, min_similarity: float) -> dict:
    """confirm_contamination on set A's decontamination pool (heldout): per_class rows of
    each label (same_problem must be confirmed; same_template and clean must not)."""
    from curate.dedup.confirm import REPORT_FILE, ConfirmContamination
    from curate.dedup.evalsets import EvalSetSpec

    rows = load("decontam_pool", "heldout")
    rng = random.Random(seed)
    chosen = []
    for label in ("same_problem", "same_template", "clean"):
        pool = [r for r in rows if r["label"] == label]
        chosen += rng.sample(pool, min(per_class, len(pool)))
    frame = pl.DataFrame({"problem_id": [f"r{i}" for i in range(len(chosen))],
                          "problem": [r["problem"] for r in chosen]})
    eval_sets = [EvalSetSpec(name=name, path=str(DATA / f"evalset_{name}.jsonl"))
                 for name in ("aime24", "aime25", "amc23", "gsm8k_test")]
    config = ConfirmContamination.Config(teacher=TEACHER, max_chars=1500, eval_sets=eval_sets, top_k=top_k,
                                         min_similarity=min_similarity, model="bundled:minilm")
    op = ConfirmContamination(config)
    ctx = context("confirm")
    ctx.cache_dir = Path(tempfile.gettempdir()) / "curate-realdata-cache"  # embeddings shared with evaluate.py
    ctx.step_dir.mkdir(parents=True, exist_ok=True)
    # judge replies must not come from an earlier run: a fresh response cache
    started = time.perf_counter()
    op.setup(ctx)
    op._judge._engine.cache = type(op._judge._engine.cache)(ctx.step_dir / "responses.sqlite")
    out = op.apply(frame, ctx)
    seconds = time.perf_counter() - started
    op.teardown()
    report = pl.read_parquet(ctx.step_dir / REPORT_FILE)
    flagged = [r is not None for r in out["reject_reason"]]
    result = {"model": TEACHER["model"], "embedding": "bundled:minilm", "top_k": top_k,
              "min_similarity": min_similarity, "rows": len(chosen), "candidate_pairs": report.height,
              "statuses": dict(report["judge_status"].value_counts().iter_rows()), "seconds": round(seconds, 1)}
    for label in ("same_problem", "same_template", "clean"):
        idx = [i for i, r in enumerate(chosen) if r["label"] == label]
        result[f"{label}_flagged"] = rate(sum(flagged[i] for i in idx), len(idx))
    same = [i for i, r in enumerate(chosen) if r["label"] == "same_problem"]
    # candidate recall: the planted eval item is among the judged candidates
    judged = {(p, e) for p, e in report.select("problem", "eval_problem").iter_rows()}
    result["candidate_recall"] = rate(sum((chosen[i]["problem"], chosen[i]["eval_problem"]) in judged for i in same),
                                      len(same))
    hits = sum(flagged[i] for i in same)
    result["recall_same_problem"] = rate(hits, len(same))
    result["precision_vs_same_problem"] = rate(hits, sum(flagged))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["agreement", "throughput", "confirm"])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--min-similarity", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", default=TEACHER["model"], help="the judge (default: %(default)s)")
    args = parser.parse_args()
    TEACHER["model"] = args.model
    if args.which == "agreement":
        result = agreement(args.items, args.seed)
    elif args.which == "throughput":
        result = throughput(args.items, args.repeats)
    else:
        result = confirm(args.per_class, args.seed, args.top_k, args.min_similarity)
    print(json.dumps(result, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
