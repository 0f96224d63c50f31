"""Candidate stage of confirm_contamination on set A heldout (no judge): for each (top_k,
min_similarity), pairs the judge would get and whether each planted overlap's eval item is
among them. Embeddings cached under $TMPDIR/curate-realdata-cache (as evaluate.py).

    PYTHONPATH=. python bench/confirm_candidates.py
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
import polars as pl  # noqa: E402
from common import DATA, load  # noqa: E402

from curate.dedup.confirm import ConfirmContamination  # noqa: E402
from curate.dedup.embed import Embedder  # noqa: E402
from curate.dedup.evalsets import EvalSetSpec, load_eval_sets  # noqa: E402

rows = load("decontam_pool", "heldout")
sets = [EvalSetSpec(name=n, path=str(DATA / f"evalset_{n}.jsonl")) for n in ("aime24", "aime25", "amc23", "gsm8k_test")]
cache = Path(tempfile.gettempdir()) / "curate-realdata-cache"
for k, ms in ((1, 0.5), (3, 0.5), (1, 0.8)):
    config = ConfirmContamination.Config(teacher={"model": "bundled:smollm2"}, eval_sets=sets, top_k=k,
                                         min_similarity=ms)
    op = ConfirmContamination(config)
    op.evals = load_eval_sets(sets)
    emb = Embedder("bundled:minilm", cache)
    problems = pl.Series([r["problem"] for r in rows])
    cand = op.candidates(problems, emb).join(op.evals.with_row_index("eval_row"), on="eval_row")
    pairs = {(a, b) for a, b in cand.select("pool_text", "eval_problem").iter_rows()}
    texts = set(cand["pool_text"])
    out = {"top_k": k, "min_similarity": ms, "pairs_to_judge": cand.height}
    for label in ("same_problem", "same_template", "clean"):
        lab = [r for r in rows if r["label"] == label]
        out[label + "_with_candidates"] = f"{sum(r['problem'] in texts for r in lab)}/{len(lab)}"
        if label != "clean":
            found = sum((r["problem"], r["eval_problem"]) in pairs for r in lab)
            out[label + "_true_item_among_candidates"] = f"{found}/{len(lab)}"
    print(json.dumps(out), flush=True)
