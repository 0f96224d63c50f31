"""Dedup edge cases (issue 35): pairs made from real GSM8K test and MATH-500 problems.

    python bench/dedup_edges.py build ../shared/data          # -> bench/realdata/data/dedup_edges.*.jsonl.gz
    PYTHONPATH=. python bench/dedup_edges.py pairs dev        # semantic_dedup + decontaminate on each pair
    PYTHONPATH=. python bench/dedup_edges.py decontam ../shared/data dev   # false 'contaminated' verdicts

Classes (label: not_duplicate unless said):
- question_changed: one word of the question sentence swapped for one that asks something else
  (more -> fewer, profit -> revenue, minimum -> maximum ...). dev and heldout use disjoint word
  lists (EDITS), so a guard tuned on dev words meets other words on heldout.
- question_entity: a name in the question replaced by another name stated in the problem.
- number_to_stated: one number changed to another number the problem states elsewhere.
- number_swap: two different numbers swap places.
- number_words (duplicate): integers written as words ("25" -> "twenty-five", "1" -> "one").
- latex_plain (duplicate): LaTeX forms written plainly or the other way (`\\frac{a}{b}` <-> `a/b`,
  `\\dfrac` -> `\\frac`, `\\cdot` -> `*`, `\\left(` -> `(`, `3 1/2` <-> `3\\frac{1}{2}`).

`pairs` counts, per class, pairs semantic_dedup (defaults; one run per class) merges and pairs decontaminate
(defaults, the original as eval item) calls `contaminated`. `decontam` checks false
`contaminated` verdicts on pools with no true overlap: GSM8K train against GSM8K test, and
one half of MATH-500 against the other (the split's half is the pool). The MATH test
problems outside MATH-500 are not in the shared data (prm800k's copy is in Git LFS), so the
MATH-500 halves stand in for them.
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
from build import NAME_SET, number_spans, outside_math  # noqa: E402
from common import DATA, load, math500_key, read_jsonl, split_of, write_jsonl  # noqa: E402

SEED = 35
# Question-word edits: (word, replacement). Disjoint between the splits.
EDITS = {
    "dev": [("more", "fewer"), ("total", "average"), ("profit", "revenue"), ("minimum", "maximum"),
            ("largest", "smallest"), ("sum", "product"), ("left", "spent"), ("positive", "negative"),
            ("hours", "minutes"), ("cost", "save"), ("each", "all"), ("perimeter", "area")],
    "heldout": [("fewer", "more"), ("less", "more"), ("maximum", "minimum"), ("smallest", "largest"),
                ("greatest", "least"), ("product", "sum"), ("average", "total"), ("remaining", "used"),
                ("earn", "spend"), ("weeks", "days"), ("odd", "even"), ("area", "perimeter"),
                ("minutes", "seconds"), ("longest", "shortest"), ("per", "in all")],
}
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def in_words(value: int) -> str:
    if value < 20:
        return WORDS[value]
    tens, units = divmod(value, 10)
    return TENS[tens] + (f"-{WORDS[units]}" if units else "")


def question_span(text: str) -> tuple[int, int]:
    """Start and end of the question: the last sentence with '?', else the last sentence."""
    starts = [0] + [m.end() for m in re.finditer(r"[.?!]\s+", text)]
    spans = [(a, b) for a, b in zip(starts, starts[1:] + [len(text)], strict=True) if text[a:b].strip()]
    asked = [s for s in spans if "?" in text[s[0]:s[1]]]
    return (asked or spans)[-1]


def question_changed(text: str, split: str, rng: random.Random) -> str | None:
    start, end = question_span(text)
    question = text[start:end]
    edits = [(w, r) for w, r in EDITS[split] if re.search(rf"\b{w}\b", question, re.I)]
    if not edits:
        return None
    word, new = rng.choice(edits)
    edited = re.sub(rf"\b{word}\b", new, question, count=1, flags=re.I)
    return text[:start] + edited + text[end:]


def question_entity(text: str, rng: random.Random) -> str | None:
    start, end = question_span(text)
    asked = [n for n in re.findall(r"\b[A-Z][a-z]+\b", text[start:end]) if n in NAME_SET]
    others = [n for n in dict.fromkeys(re.findall(r"\b[A-Z][a-z]+\b", text[:start])) if n in NAME_SET]
    others = [n for n in others if n not in asked]
    if not asked or not others:
        return None
    question = re.sub(rf"\b{asked[0]}\b", rng.choice(others), text[start:end], count=1)
    return text[:start] + question + text[end:]


def _replace(text: str, match: re.Match, new: str) -> str:
    return text[:match.start(1)] + new + text[match.end(1):]


def number_to_stated(text: str, rng: random.Random) -> str | None:
    spans = number_spans(text)
    values = list(dict.fromkeys(m.group(1) for m in spans))
    if len(values) < 2:
        return None
    target = rng.choice(spans)
    return _replace(text, target, rng.choice([v for v in values if v != target.group(1)]))


def number_swap(text: str, rng: random.Random) -> str | None:
    spans = number_spans(text)
    pairs = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a.group(1) != b.group(1)]
    if not pairs:
        return None
    first, second = rng.choice(pairs)
    return _replace(_replace(text, second, first.group(1)), first, second.group(1))


def number_words(text: str, rng: random.Random) -> str | None:
    out = outside_math(text, _digits_as_words)
    return out if out != text else None


def _digits_as_words(text: str) -> str:
    """Integers 1-99 of prose written as words."""
    small = [m for m in number_spans(text) if m.group(1).isdigit() and 1 <= int(m.group(1)) < 100
             and not re.match(r"[$/^.\d]", text[m.end(1):m.end(1) + 1] or " ")
             and not re.search(r"[$/^\\{]$", text[:m.start(1)])]
    for m in reversed(small):
        text = _replace(text, m, in_words(int(m.group(1))))
    return text


LATEX_TO_PLAIN = [(r"\\[dt]frac", r"\\frac"), (r"\\cdot", "*"), (r"\\left\(", "("), (r"\\right\)", ")"),
                  (r"(\d)\s*\\frac\{(\d+)\}\{(\d+)\}", r"\1 \2/\3"), (r"\\frac\{(\d+)\}\{(\d+)\}", r"\1/\2")]


def latex_plain(text: str, rng: random.Random) -> str | None:
    out = text
    for pattern, new in LATEX_TO_PLAIN:
        out = re.sub(pattern, new, out)
    if out == text:  # plain text with fractions: the other way
        out = re.sub(r"\b(\d+) (\d+)/(\d+)\b", r"$\1\\frac{\2}{\3}$", text)
        out = re.sub(r"(?<![\d$/])(\d+)/(\d+)\b(?!\$)", r"$\\dfrac{\1}{\2}$", out)
    return out if out != text else None


def sources(shared: Path) -> list[dict]:
    rows = [{"problem": r["question"], "source": "gsm8k_test", "key": r["question"]}
            for r in read_jsonl(shared / "gsm8k" / "test.jsonl")]
    rows += [{"problem": r["problem"], "source": "math500", "key": math500_key(i)}
             for i, r in enumerate(read_jsonl(shared / "math500" / "test.jsonl"))]
    return rows


def build(shared: Path) -> None:
    rng = random.Random(SEED)
    out: dict[str, list[dict]] = {"dev": [], "heldout": []}
    for row in sources(shared):
        split = split_of(row["key"])
        text = row["problem"]
        makers = {"question_changed": lambda t, r, s: question_changed(t, s, r),
                  "question_entity": lambda t, r, s: question_entity(t, r),
                  "number_to_stated": lambda t, r, s: number_to_stated(t, r),
                  "number_swap": lambda t, r, s: number_swap(t, r),
                  "number_words": lambda t, r, s: number_words(t, r),
                  "latex_plain": lambda t, r, s: latex_plain(t, r)}
        for kind, make in makers.items():
            variant = make(text, rng, split)
            if variant and variant != text:
                label = "duplicate" if kind in ("number_words", "latex_plain") else "not_duplicate"
                out[split].append({"problem": text, "variant": variant, "class": kind, "label": label,
                                   "source": row["source"]})
    for split, rows in out.items():
        write_jsonl(DATA / f"dedup_edges.{split}.jsonl.gz", rows)
        print(split, dict(Counter((r["class"], r["source"]) for r in rows)))


def measure_pairs(split: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
    import evaluate

    from curate.dedup.operators import Decontaminate, SemanticDedup

    rows = load("dedup_edges", split)
    ctx = evaluate.context("edges")
    op = SemanticDedup(SemanticDedup.Config())
    op.setup(ctx)
    merged, contaminated, total = Counter(), Counter(), Counter()
    # One run per class (each original has at most one variant of a class): a pair is merged
    # when the variant is rejected as a duplicate of its own original.
    for kind in sorted({r["class"] for r in rows}):
        chosen = [r for r in rows if r["class"] == kind]
        texts = [r["problem"] for r in chosen] + [r["variant"] for r in chosen]
        out = op.apply(evaluate.problems(texts, distinct_ids=True), ctx)
        details = out["reject_detail"].to_list()[len(chosen):]
        total[kind] = len(chosen)
        merged[kind] = sum(detail is not None and json.loads(detail)["duplicate_of"] == f"r{i}"
                           for i, detail in enumerate(details))
    with tempfile.TemporaryDirectory() as tmp:
        evals = Path(tmp) / "evals.jsonl"
        originals = list(dict.fromkeys(r["problem"] for r in rows))
        evals.write_text("".join(json.dumps({"id": str(i), "problem": p}) + "\n" for i, p in enumerate(originals)))
        decon = Decontaminate(Decontaminate.Config(eval_sets=[str(evals)]))
        decon.setup(ctx)
        out = decon.apply(evaluate.problems([r["variant"] for r in rows], distinct_ids=True), ctx)
        for r, reason in zip(rows, out["reject_reason"], strict=True):
            contaminated[r["class"]] += int(reason == "contaminated")
    for kind in sorted(total):
        print(f"{kind:18} merged {evaluate.rate(merged[kind], total[kind]):18} "
              f"contaminated {evaluate.rate(contaminated[kind], total[kind])}")


def measure_decontam(shared: Path, split: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
    import evaluate

    from curate.dedup.operators import Decontaminate

    math = [(math500_key(i), r["problem"]) for i, r in enumerate(read_jsonl(shared / "math500" / "test.jsonl"))]
    gsm_train = [r["question"] for r in read_jsonl(shared / "gsm8k" / "train.jsonl")]
    gsm_test = [r["question"] for r in read_jsonl(shared / "gsm8k" / "test.jsonl")]
    checks = {
        "math500 half vs other half": ([p for k, p in math if split_of(k) == split],
                                       [p for k, p in math if split_of(k) != split]),
        "gsm8k train (split half) vs gsm8k test": ([p for p in gsm_train if split_of(p) == split], gsm_test),
    }
    for name, (pool, evals) in checks.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "evals.jsonl"
            path.write_text("".join(json.dumps({"id": str(i), "problem": p}) + "\n" for i, p in enumerate(evals)))
            ctx = evaluate.context("decontam-edges")
            op = Decontaminate(Decontaminate.Config(eval_sets=[str(path)]))
            op.setup(ctx)
            out = op.apply(evaluate.problems(pool, distinct_ids=True), ctx)
        reasons = Counter(out["reject_reason"].drop_nulls().to_list())
        print(f"{name}: pool {len(pool)}, flagged {sum(reasons.values())}, {dict(reasons)}")
        for text, detail in zip(out["problem"], out["reject_detail"], strict=True):
            if detail and json.loads(detail)["match"] == "same_problem":
                print("  contaminated:", text[:160].replace("\n", " "), "|| EVAL:",
                      json.loads(detail)["eval_problem"][:160].replace("\n", " "))


def main() -> None:
    command = sys.argv[1]
    if command == "build":
        build(Path(sys.argv[2]))
    elif command == "pairs":
        measure_pairs(sys.argv[2])
    else:
        measure_decontam(Path(sys.argv[2]), sys.argv[3])


if __name__ == "__main__":
    main()
