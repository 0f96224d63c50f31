"""Measure the current `curate` operators on the real-data evaluation sets (built by
bench/realdata/build.py). Report on `heldout`; tune on `dev`.

    PYTHONPATH=. python bench/realdata/evaluate.py [dedup|decontam|arith|verify|all] \
        [--split heldout] [--model bundled:minilm] [--threshold 0.9] [--json out.json]

Every figure goes through an operator's Python API (setup + apply, as the tests call it),
so a later change to an operator shows up here unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, load  # noqa: E402

from curate.core.operator import StepContext  # noqa: E402
from curate.schema import problem_id_expr  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "curate-realdata-cache"


def context(name: str) -> StepContext:
    step = Path(tempfile.mkdtemp(prefix=f"realdata-{name}-"))
    return StepContext(step_id=name, step_dir=step, cache_dir=CACHE)


def problems(texts: list[str], distinct_ids: bool = False) -> pl.DataFrame:
    """A problem table. distinct_ids: one id per row instead of the content id (which is
    equal for texts that differ only in whitespace, so they would be one problem)."""
    frame = pl.DataFrame({"problem": texts}, schema={"problem": pl.String})
    ids = pl.format("r{}", pl.int_range(pl.len())) if distinct_ids else problem_id_expr(pl.col("problem"))
    return frame.with_columns(problem_id=ids, source=pl.lit("realdata"))


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {hits / total:.1%}" if total else "0/0"


# --- A: semantic dedup on pairs --------------------------------------------------------------

def eval_dedup(split: str, model: str, threshold: float) -> dict:
    from curate.dedup.operators import SemanticDedup

    rows = load("dedup_pairs", split)
    ctx = context("dedup")
    op = SemanticDedup(SemanticDedup.Config(model=model, threshold=threshold))
    op.setup(ctx)
    # Embed every distinct text once (cached), then decide each pair on its own: a pair is
    # 'merged' when semantic_dedup run on just those two rows rejects the variant.
    op.apply(problems(list(dict.fromkeys([r["problem"] for r in rows] + [r["variant"] for r in rows]))), ctx)
    merged = Counter()
    total = Counter()
    started = time.perf_counter()
    for r in rows:
        # Distinct ids: the decision is made on the texts (with content ids a whitespace
        # variant has its original's id and is the same problem before dedup sees it).
        out = op.apply(problems([r["problem"], r["variant"]], distinct_ids=True), ctx)
        total[r["class"]] += 1
        merged[r["class"]] += int(out["reject_reason"][1] is not None)
    seconds = time.perf_counter() - started
    dup = [c for c in total if c not in ("numbers_one", "numbers_all", "unrelated")]
    near_hits, near_total = sum(merged[c] for c in dup), sum(total[c] for c in dup)
    num_hits = merged["numbers_one"] + merged["numbers_all"]
    num_total = total["numbers_one"] + total["numbers_all"]
    result = {
        "set": "dedup_pairs", "split": split, "model": model, "threshold": threshold, "pairs": len(rows),
        "number_changed_merged": rate(num_hits, num_total),
        "near_duplicate_recall": rate(near_hits, near_total),
        "name_swap_recall": rate(merged["name_swap"], total["name_swap"]),
        "unrelated_merged": rate(merged["unrelated"], total["unrelated"]),
        "per_class_merged": {c: rate(merged[c], total[c]) for c in sorted(total)},
        "seconds_pairwise": round(seconds, 1),
    }
    return result


# --- A: decontamination pool -------------------------------------------------------------------

def eval_decontam(split: str, model: str) -> dict:
    from curate.dedup.operators import Decontaminate

    rows = load("decontam_pool", split)
    eval_sets = [{"path": str(DATA / f"evalset_{name}.jsonl"), "name": name}
                 for name in ("aime24", "aime25", "amc23", "gsm8k_test")]
    frame = problems([r["problem"] for r in rows])
    result = {"set": "decontam_pool", "split": split, "rows": len(rows), "eval_sets": [e["name"] for e in eval_sets]}
    for methods in (["ngram"], ["ngram", "embedding"]):
        ctx = context("decontam")
        op = Decontaminate(Decontaminate.Config(eval_sets=eval_sets, methods=methods, model=model))
        op.setup(ctx)
        started = time.perf_counter()
        out = op.apply(frame, ctx)
        seconds = time.perf_counter() - started
        flagged = [reason is not None for reason in out["reject_reason"]]
        by_label = defaultdict(lambda: [0, 0])
        by_class = defaultdict(lambda: [0, 0])
        for r, f in zip(rows, flagged, strict=True):
            by_label[r["label"]][0] += f
            by_label[r["label"]][1] += 1
            by_class[r["class"]][0] += f
            by_class[r["class"]][1] += 1
        clean_flags = [json.loads(d) for r, f, d in zip(rows, flagged, out["reject_detail"], strict=True)
                       if f and r["label"] == "clean"]
        result["+".join(methods)] = {
            "clean_false_flags": rate(*by_label["clean"]),
            "same_problem_caught": rate(*by_label["same_problem"]),
            "same_template_flagged": rate(*by_label["same_template"]),
            "per_class_flagged": {c: rate(*v) for c, v in sorted(by_class.items())},
            "false_flag_methods": dict(Counter(d.get("method") for d in clean_flags)),
            "seconds": round(seconds, 1),
        }
    return result


# --- B: planted false equations ----------------------------------------------------------------

def trace_frame(rows: list[dict], text: str, reference: str) -> pl.DataFrame:
    """Trace-table rows (the columns verify and the trace filters read)."""
    from curate.llm.reasoning import split_reasoning
    from curate.schema import conform
    from curate.sources.skythought import estimate_tokens, split_output

    records = []
    for n, r in enumerate(rows):
        completion = r[text]
        if "<think>" in completion:
            _, reasoning, answer = split_reasoning(completion, None, "<think>", "</think>")
        else:
            reasoning, answer = split_output(completion)
        records.append({
            "problem_id": f"p{n}", "problem": r.get("problem") or "", "reference_answer": r[reference],
            "source": "realdata",
            "domain": "math", "tests": None, "metadata": "{}", "trace_id": f"t{n}", "teacher": r.get("teacher", "x"),
            "model": "x", "sample_index": 0, "prompt": r.get("problem") or "", "completion": completion,
            "reasoning": reasoning, "answer_text": answer, "prompt_tokens": 1,
            "reasoning_tokens": estimate_tokens(reasoning), "answer_tokens": estimate_tokens(answer),
            "finish_reason": r.get("finish_reason"), "generation_params": "{}",
        })
    return conform(pl.DataFrame(records, infer_schema_length=None), "trace")


def run_op(op_class, frame: pl.DataFrame, **config) -> pl.DataFrame:
    ctx = context(op_class.name)
    op = op_class(op_class.Config(**config))
    op.setup(ctx)
    return op.apply(frame, ctx)


def eval_arith(split: str) -> dict:
    """arithmetic_check on planted false equations and on real clean traces: row-level
    detection, precision, and whether the quoted evidence is the planted equation (its
    stated result is the planted value)."""
    from curate.prune.arithmetic import ArithmeticCheck

    rows = load("arith_traces", split)
    frame = trace_frame(rows, "text", "final_answer")
    started = time.perf_counter()
    checked = run_op(ArithmeticCheck, frame)
    seconds = time.perf_counter() - started
    flagged = [r is not None for r in checked["reject_reason"]]
    evidence = [json.loads(d)["false_equations"] if d else [] for d in checked["reject_detail"]]
    result = {"set": "arith_traces", "split": split, "rows": len(rows), "seconds": round(seconds, 2)}
    planted_hits = planted_total = flagged_total = evidence_right = 0
    for source in sorted({r["source"] for r in rows}):
        for label in ("clean", "planted"):
            idx = [i for i, r in enumerate(rows) if r["source"] == source and r["label"] == label]
            hits = sum(flagged[i] for i in idx)
            result[f"{source}/{label}"] = {"flagged": rate(hits, len(idx))}
            if label == "planted":
                planted_hits += hits
                planted_total += len(idx)
                evidence_right += sum(any(_states(e, rows[i]["planted_value"]) for e in evidence[i]) for i in idx)
            if label == "clean":
                result[f"{source}/clean"]["flagged_evidence"] = [evidence[i] for i in idx if flagged[i]]
            flagged_total += hits
    result["planted_detected"] = rate(planted_hits, planted_total)
    result["precision"] = rate(planted_hits, flagged_total)
    result["evidence_is_the_planted_equation"] = rate(evidence_right, planted_hits)
    return result


def _states(equation: str, value) -> bool:
    """Whether a quoted false equation states `value` as its result."""
    stated = equation.rsplit("=", 1)[-1].replace(",", "").replace("$", "")
    return str(value).replace(",", "") in stated


# --- C: verify and filters on real formats -----------------------------------------------------

def eval_verify(split: str) -> dict:
    from curate.prune.filters import AnswerConsistencyFilter, AnswerMissingFilter
    from curate.verify.operators import Verify

    rows = load("verify_rows", split)
    frame = trace_frame(rows, "completion", "reference")
    started = time.perf_counter()
    verified = run_op(Verify, frame)
    seconds = time.perf_counter() - started
    missing = run_op(AnswerMissingFilter, frame)
    consistency = run_op(AnswerConsistencyFilter, frame)
    per_class = {}
    agree_all = 0
    good_total = missing_total = consistency_total = 0
    for cls in sorted({r["class"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["class"] == cls]
        agree = sum(verified["correct"][i] is not None and bool(verified["correct"][i]) == rows[i]["label"]
                    for i in idx)
        good = [i for i in idx if rows[i]["label"]]
        miss = sum(missing["reject_reason"][i] is not None for i in good)
        cons = sum(consistency["reject_reason"][i] is not None for i in good)
        per_class[cls] = {"verify_agreement": rate(agree, len(idx)),
                          "answer_missing_rejects_good": rate(miss, len(good)),
                          "answer_consistency_rejects_good": rate(cons, len(good))}
        agree_all += agree
        good_total += len(good)
        missing_total += miss
        consistency_total += cons
    return {"set": "verify_rows", "split": split, "rows": len(rows), "verify_seconds": round(seconds, 1),
            "verify_agreement": rate(agree_all, len(rows)),
            "answer_missing_rejects_good": rate(missing_total, good_total),
            "answer_consistency_rejects_good": rate(consistency_total, good_total),
            "per_class": per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["dedup", "decontam", "arith", "verify", "all"])
    parser.add_argument("--split", default="heldout", choices=["dev", "heldout"])
    parser.add_argument("--model", default="bundled:minilm")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    todo = ["dedup", "decontam", "arith", "verify"] if args.which == "all" else [args.which]
    for which in todo:
        started = time.perf_counter()
        if which == "dedup":
            result = eval_dedup(args.split, args.model, args.threshold)
        elif which == "decontam":
            result = eval_decontam(args.split, args.model)
        elif which == "arith":
            result = eval_arith(args.split)
        else:
            result = eval_verify(args.split)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result, indent=1), flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
