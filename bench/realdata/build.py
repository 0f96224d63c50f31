"""Build the real-data evaluation sets for issues 17 (dedup / decontamination), 18
(arithmetic check) and 19 (verify and trace filters) from the public data in a
`shared/data` folder, into bench/realdata/data/.

    python bench/realdata/build.py /path/to/shared/data [--out bench/realdata/data]

Deterministic (fixed seed; byte-identical output on a rerun). Every set has a `dev` and a
`heldout` split built from disjoint source problems (see common.split_of): tune on dev,
report on heldout. See bench/realdata/README.md for what each file holds.
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import sys
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, SPLITS, math500_key, read_jsonl, split_of, write_jsonl  # noqa: E402

SEED = 17

# ------------------------------------------------------------------------------------------
# text helpers
# ------------------------------------------------------------------------------------------

MATH_SPAN = re.compile(r"(\$\$.*?\$\$|\$.*?\$|\\\(.*?\\\)|\\\[.*?\\\]|\[asy\].*?\[/asy\])", re.S)
NUMBER = re.compile(r"(?<![\w\\.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w]|\.\d)")


def outside_math(text: str, fn) -> str:
    """Apply fn to the prose parts only (not inside $...$, \\(...\\), \\[...\\], [asy])."""
    parts = MATH_SPAN.split(text)
    return "".join(part if i % 2 else fn(part) for i, part in enumerate(parts))


def inside_math(text: str, fn) -> str:
    parts = MATH_SPAN.split(text)
    return "".join(fn(part) if i % 2 and not part.startswith("[asy]") else part for i, part in enumerate(parts))


def number_spans(text: str) -> list[re.Match]:
    """Numbers outside Asymptote code."""
    asy = [(m.start(), m.end()) for m in re.finditer(r"\[asy\].*?\[/asy\]", text, re.S)]
    return [m for m in NUMBER.finditer(text) if not any(a <= m.start() < b for a, b in asy)]


def other_number(token: str, rng: random.Random) -> str:
    """A different number of the same form (integer, decimal, 1,000-style)."""
    commas = "," in token
    plain = token.replace(",", "")
    if "." in plain:
        whole, frac = plain.split(".")
        value = Fraction(plain)
        step = Fraction(rng.choice([1, 2, 3, 5]), 10 ** len(frac)) * rng.choice([1, 10])
        new = value + step if rng.random() < 0.6 or value - step <= 0 else value - step
        return f"{float(new):.{len(frac)}f}"
    value = int(plain)
    candidates = [value + d for d in (1, 2, 3, 4, 5, 6, 10, 12, 20) if value + d != value]
    candidates += [value - d for d in (1, 2, 3, 4, 5) if value - d > 0]
    if value >= 10:
        candidates += [value * 2, value + value // 2]
    new = rng.choice(candidates)
    return f"{new:,}" if commas else str(new)


def change_numbers(text: str, rng: random.Random, how: str) -> tuple[str, list[tuple[str, str]]] | None:
    """Change one ('one') or every ('all') stated number; None when the text has none.
    Every occurrence of a changed value changes alike, so the problem stays coherent."""
    spans = number_spans(text)
    values = list(dict.fromkeys(m.group(1) for m in spans))
    if not values:
        return None
    chosen = [rng.choice(values)] if how == "one" else values
    mapping = {}
    for value in chosen:
        new = other_number(value, rng)
        while new in values or new in mapping.values():
            new = other_number(new, rng)
        mapping[value] = new
    out, last = [], 0
    for m in spans:
        if m.group(1) in mapping:
            out.append(text[last:m.start(1)] + mapping[m.group(1)])
            last = m.end(1)
    out.append(text[last:])
    return "".join(out), list(mapping.items())


SYNONYMS = {
    "buys": "purchases", "bought": "purchased", "buy": "purchase", "store": "shop", "stores": "shops",
    "kids": "children", "gives": "hands", "gave": "handed", "begins": "starts", "began": "started",
    "wants to": "would like to", "twice": "two times", "total": "overall", "find": "determine",
    "compute": "calculate", "largest": "greatest", "smallest": "least", "car": "automobile",
    "big": "large", "quickly": "fast", "altogether": "in all", "finish": "complete", "finished": "completed",
    "each day": "every day", "each week": "every week", "each month": "every month", "evaluate": "compute",
    "how much money": "how many dollars", "receives": "gets", "earns": "makes", "needs": "requires",
}
SYNONYM_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b", re.I)


def synonyms(text: str) -> str | None:
    count = 0

    def swap(m):
        nonlocal count
        count += 1
        word = m.group(0)
        new = SYNONYMS[word.lower()]
        return new[0].upper() + new[1:] if word[0].isupper() else new

    out = outside_math(text, lambda part: SYNONYM_RE.sub(swap, part))
    return out if count else None


NAMES = """James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew
Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey
Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander
Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Noah
Ethan Jeremy Walter Christian Keith Roger Terry Austin Sean Gerald Carl Harold Dylan Arthur Lawrence Jordan
Jesse Bryan Billy Bruce Gabriel Joe Logan Albert Willie Alan Eugene Russell Vincent Philip Bobby Johnny
Bradley Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret
Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon
Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine
Debra Rachel Carolyn Janet Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly
Lauren Christina Joan Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara
Madison Frances Kathryn Janice Jean Abigail Alice Judy Sophia Grace Denise Amber Doris Marilyn Danielle
Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie Kayla Alexis Lori Tom Tim Ben Sam Max Leo
Mia Ella Lily Zoe Chloe Ava Liam Mason Lucas Oliver Elijah Aiden Carter Owen Wyatt Luke Jayden Isaac Caleb
Julia Rose Ivy Nora Hazel Aria Layla Penelope Riley Zoey Stella Paisley Bella Claire Skylar Lucy Anya Mike
Jim Bob Bill Carla Tina Gina Nina Rita Jane Kate Jill Jen Jenny Tony Alex Marco Carlos Juan Luis Sofia
Mateo Diego Rosa Elena Priya Raj Ali Omar Fatima Aisha Yuki Kenji Mei Wei Chen Ravi Arjun Maya Tara""".split()
NAME_SET = set(NAMES)


def name_swap(text: str, rng: random.Random) -> str | None:
    found = [n for n in dict.fromkeys(re.findall(r"\b[A-Z][a-z]+\b", text)) if n in NAME_SET]
    if not found:
        return None
    used = set(found)
    mapping = {}
    for name in found:
        choices = [n for n in NAMES if n not in used]
        new = rng.choice(choices)
        used.add(new)
        mapping[name] = new
    return re.sub(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b", lambda m: mapping[m.group(1)], text)


REFERRING = re.compile(
    r"\b(he|she|they|him|her|his|hers|them|their|it|its|this|that|these|those|then|rest|remaining|also|"
    r"another|other|others|after|before|same|later|next|left|now|there|such|remainder|twice|half|times|more|less|"
    r"fewer|each|both|instead|still|again|total)\b", re.I)


def reorder(text: str, rng: random.Random) -> str | None:
    """Swap two adjacent statements when neither refers to anything (no pronouns,
    comparatives, 'then', ...) and neither is the question: conservative by design."""
    if "$" in text or "\n" in text.strip():
        return None
    sentences = re.split(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<=[.!])\s+(?=[A-Z])", text.strip())
    if len(sentences) < 3:
        return None
    pairs = [i for i in range(len(sentences) - 2)
             if not REFERRING.search(sentences[i]) and not REFERRING.search(sentences[i + 1])
             and sentences[i].endswith(".") and sentences[i + 1].endswith(".")]
    if not pairs:
        return None
    i = rng.choice(pairs)
    sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
    return " ".join(sentences)


def case_change(text: str, rng: random.Random) -> str:
    return outside_math(text, str.lower) if rng.random() < 0.7 else outside_math(text, str.upper)


def whitespace(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    out = words[0]
    for word in words[1:]:
        out += rng.choice([" ", " ", " ", "  ", "   ", "\n", " \t"]) + word
    return "  " + out + " \n"


def punctuation(text: str, rng: random.Random) -> str | None:
    def prose(part: str) -> str:
        part = re.sub(r",(?=\s)", "", part)
        part = re.sub(r"!", ".", part)
        return part
    out = outside_math(text, prose).rstrip()
    if out and out[-1] in "?.":
        out = out[:-1] if rng.random() < 0.5 else out[:-1] + " ?"
    return out if out != text else None


def latex_spacing(text: str, rng: random.Random) -> str | None:
    if "$" not in text and "\\(" not in text:
        return None

    def respace(span: str) -> str:
        if rng.random() < 0.5:  # tight
            return re.sub(r"\s*([=+\-<>,])\s*", r"\1", span)
        span = re.sub(r"\s*([=+<>])\s*", r" \1 ", span)
        return re.sub(r",\s*", r", \\, ", span)
    out = inside_math(text, respace)
    return out if out != text else None


NEAR_DUPLICATES = ("case", "whitespace", "punctuation", "synonym", "name_swap", "reorder", "latex_spacing")


def near_duplicate(kind: str, text: str, rng: random.Random) -> str | None:
    out = {
        "case": lambda: case_change(text, rng),
        "whitespace": lambda: whitespace(text, rng),
        "punctuation": lambda: punctuation(text, rng),
        "synonym": lambda: synonyms(text),
        "name_swap": lambda: name_swap(text, rng),
        "reorder": lambda: reorder(text, rng),
        "latex_spacing": lambda: latex_spacing(text, rng),
    }[kind]()
    return out if out and out != text else None


def norm_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


# ------------------------------------------------------------------------------------------
# set A: dedup pairs and the decontamination pool (issue 17)
# ------------------------------------------------------------------------------------------

def build_dedup_pairs(shared: Path, per_split: dict[str, int]) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    sources = {
        "gsm8k_test": [r["question"] for r in read_jsonl(shared / "gsm8k" / "test.jsonl")],
        "math500": [r["problem"] for r in read_jsonl(shared / "math500" / "test.jsonl")],
    }
    out = {s: [] for s in SPLITS}
    for source, texts in sources.items():
        by_split = defaultdict(list)
        for i, text in enumerate(texts):
            key = math500_key(i) if source == "math500" else f"{source}:{text}"
            by_split[split_of(key)].append((i, text))
        for split in SPLITS:
            chosen = rng.sample(by_split[split], min(per_split[source], len(by_split[split])))
            chosen.sort()
            for i, text in chosen:
                base = {"split": split, "source": source, "source_index": i, "problem": text}
                for how in ("one", "all"):
                    changed = change_numbers(text, rng, how)
                    if changed and (how == "one" or len(changed[1]) > 1):
                        out[split].append({**base, "variant": changed[0], "class": f"numbers_{how}",
                                           "label": "not_duplicate", "changes": changed[1]})
                for kind in NEAR_DUPLICATES:
                    if kind == "latex_spacing" and source != "math500":
                        continue  # GSM8K's "$" are dollars, not LaTeX
                    variant = near_duplicate(kind, text, rng)
                    if variant:
                        out[split].append({**base, "variant": variant, "class": kind, "label": "duplicate"})
                j, other = rng.choice([p for p in by_split[split] if p[0] != i])
                out[split].append({**base, "variant": other, "class": "unrelated", "label": "not_duplicate",
                                   "other_index": j})
    for split in SPLITS:
        for n, row in enumerate(out[split]):
            row["pair_id"] = f"{split}-{n:05d}"
    return out


def eval_items(shared: Path) -> list[dict]:
    items = []
    for name in ("aime24", "aime25", "amc23"):
        for i, r in enumerate(read_jsonl(shared / "evalsets" / f"{name}.jsonl")):
            items.append({"eval_set": name, "eval_id": str(r.get("id", i)), "problem": r["problem"]})
    for i, r in enumerate(read_jsonl(shared / "gsm8k" / "test.jsonl")):
        items.append({"eval_set": "gsm8k_test", "eval_id": str(i), "problem": r["question"]})
    return items


def overlap_check(pool: list[str], evals: list[str], n: int = 8) -> list[tuple[int, int, float]]:
    """(pool index, eval index, containment) for every pair sharing an 8-word shingle whose
    shingle containment (of the shorter text) is >= 0.5, or that is equal after
    normalisation: the 'near' check that a true overlap would not escape."""
    def shingles(text):
        words = norm_words(text)
        return {" ".join(words[k:k + n]) for k in range(max(1, len(words) - n + 1))}
    eval_sh = [shingles(t) for t in evals]
    index = defaultdict(set)
    for j, sh in enumerate(eval_sh):
        for s in sh:
            index[s].add(j)
    eval_norm = {" ".join(norm_words(t)): j for j, t in enumerate(evals)}
    found = []
    for i, text in enumerate(pool):
        if " ".join(norm_words(text)) in eval_norm:
            found.append((i, eval_norm[" ".join(norm_words(text))], 1.0))
            continue
        sh = shingles(text)
        hits = Counter(j for s in sh for j in index.get(s, ()))
        for j, shared_count in hits.items():
            containment = shared_count / min(len(sh), len(eval_sh[j]))
            if containment >= 0.5:
                found.append((i, j, round(containment, 3)))
    return found


def build_decontamination(shared: Path, out_dir: Path, gsm8k_per_split: int, planted_per_split: dict[str, int],
                          log: list[str]) -> dict[str, list[dict]]:
    rng = random.Random(SEED + 1)
    items = eval_items(shared)
    # The eval sets a decontamination run is given: same for both splits (a real run checks
    # against whole benchmarks); only the *planted* items are split.
    for name in ("aime24", "aime25", "amc23", "gsm8k_test"):
        write_jsonl(out_dir / f"evalset_{name}.jsonl", [
            {"id": it["eval_id"], "problem": it["problem"]} for it in items if it["eval_set"] == name])
    train = [r["question"] for r in read_jsonl(shared / "gsm8k" / "train.jsonl")]
    math500 = read_jsonl(shared / "math500" / "test.jsonl")

    # The 'no true overlap' claim, checked: exact (normalised) and near (shingle containment).
    eval_texts = [it["problem"] for it in items]
    competition = [it["problem"] for it in items if it["eval_set"] != "gsm8k_test"]
    train_hits = overlap_check(train, eval_texts)
    math_hits = overlap_check([r["problem"] for r in math500], competition)
    log.append(f"overlap check, GSM8K train ({len(train)}) vs GSM8K test + AIME24/25 + AMC23 ({len(eval_texts)}): "
               f"{len(train_hits)} pairs with normalised equality or 8-gram containment >= 0.5")
    for i, j, c in train_hits:
        log.append(f"  train[{i}] ~ {items[j]['eval_set']}[{items[j]['eval_id']}] containment {c}: "
                   f"{train[i][:90]!r} | {items[j]['problem'][:90]!r}")
    log.append(f"overlap check, MATH-500 (500) vs AIME24/25 + AMC23 ({len(competition)}): {len(math_hits)} pairs")
    excluded_train = {i for i, _, _ in train_hits}
    excluded_math = {i for i, _, _ in math_hits}

    pools = {s: [] for s in SPLITS}
    train_by_split = defaultdict(list)
    for i, text in enumerate(train):
        if i not in excluded_train:
            train_by_split[split_of(f"gsm8k_train:{text}")].append(i)
    for split in SPLITS:
        for i in sorted(rng.sample(train_by_split[split], gsm8k_per_split)):
            pools[split].append(
                {"problem": train[i], "origin": f"gsm8k_train:{i}", "label": "clean", "class": "gsm8k_train"}
            )
    for i, r in enumerate(math500):
        if i not in excluded_math:
            pools[split_of(math500_key(i))].append({"problem": r["problem"], "origin": f"math500:{i}", "label": "clean",
                                                     "class": "math500"})
    # Planted overlaps from disjoint halves of the eval items.
    by_split = defaultdict(lambda: defaultdict(list))
    for it in items:
        by_split[split_of(f"eval:{it['eval_set']}:{it['eval_id']}")][it["eval_set"] == "gsm8k_test"].append(it)
    light = ("verbatim", "case", "whitespace", "punctuation", "synonym", "name_swap", "latex_spacing", "prefix")
    for split in SPLITS:
        for is_gsm8k, group in by_split[split].items():
            k = planted_per_split["gsm8k_test" if is_gsm8k else "competition"]
            for it in rng.sample(group, min(k, len(group))):
                base = {"eval_set": it["eval_set"], "eval_id": it["eval_id"], "eval_problem": it["problem"],
                        "origin": f"{it['eval_set']}:{it['eval_id']}"}
                kinds = [kind for kind in light if kind in ("verbatim", "prefix") or (
                    near_duplicate(kind, it["problem"], random.Random(0))
                    and not (is_gsm8k and kind == "latex_spacing"))]
                kind = rng.choice(kinds)
                if kind == "verbatim":
                    text = it["problem"]
                elif kind == "prefix":
                    text = rng.choice(["Solve the following problem. ", "Problem: ", "Question: "]) + it["problem"]
                else:
                    text = near_duplicate(kind, it["problem"], rng)
                pools[split].append({**base, "problem": text, "label": "same_problem", "class": f"planted_{kind}"})
                changed = change_numbers(it["problem"], rng, "all")
                if changed:
                    pools[split].append({**base, "problem": changed[0], "label": "same_template",
                                         "class": "planted_numbers_changed", "changes": changed[1]})
        rng.shuffle(pools[split])
        for n, row in enumerate(pools[split]):
            row["row_id"] = f"{split}-{n:05d}"
    return pools


# ------------------------------------------------------------------------------------------
# set B: planted false equations (issue 18)
# ------------------------------------------------------------------------------------------

ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
SAFE_EXPR = re.compile(r"^[\d\s.+\-*/()]+$")


def safe_eval(expr: str) -> float | None:
    expr = expr.strip()
    if not SAFE_EXPR.match(expr):
        return None
    try:
        node = ast.parse(expr, mode="eval")
        value = eval(compile(node, "<expr>", "eval"), {"__builtins__": {}}, {})  # digits and operators only
        return float(value)
    except Exception:
        return None


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def wrong_value(token: str, rng: random.Random) -> str:
    plain = token.replace(",", "")
    if "." in plain:
        decimals = len(plain.split(".")[1])
        value = float(plain) + rng.choice([1, 2, -1, 10]) * (1 if float(plain) > 10 else 0.5)
        return f"{abs(value):.{decimals}f}"
    value = int(plain)
    options = [value + d for d in (1, 2, 3, 10, -1, -2, -10) if value + d >= 0 and value + d != value]
    if len(plain) >= 2 and plain[-1] != plain[-2]:
        options.append(int(plain[:-2] + plain[-1] + plain[-2]))  # transposed digits
    new = rng.choice([o for o in options if o != value])
    return f"{new:,}" if "," in token else str(new)


def gsm8k_rows(shared: Path, per_split: int, rng: random.Random) -> dict[str, list[dict]]:
    records = read_jsonl(shared / "gsm8k" / "train.jsonl")
    by_split = defaultdict(list)
    for i, r in enumerate(records):
        by_split[split_of(f"gsm8k_train:{r['question']}")].append(i)
    out = {s: [] for s in SPLITS}
    for split in SPLITS:
        for i in sorted(rng.sample(by_split[split], per_split)):
            r = records[i]
            solution = r["answer"]
            final = solution.rsplit("####", 1)[1].strip()
            annotations = list(ANNOTATION.finditer(solution))
            native = [m.group(0) for m in annotations
                      if (v := safe_eval(m.group(1))) is not None
                      and (c := safe_eval(m.group(2).replace(",", ""))) is not None
                      and not close(v, c)]
            # Planting sites: a correct annotated equation whose result is stated right after it.
            sites = []
            for m in annotations:
                value, stated = safe_eval(m.group(1)), re.match(r"[\d,]*\.?\d+", solution[m.end():])
                if value is None or stated is None:
                    continue
                result = stated.group(0)
                if not close(value, float(result.replace(",", ""))) or not re.search(r"=\s*$", solution[:m.start()]):
                    continue
                sites.append((m, result))
            base = {"source": "gsm8k_train_reference", "source_index": i, "problem": r["question"],
                    "final_answer": final, "native_annotation_errors": native}
            for fmt in ("plain", "annotated"):
                text = solution if fmt == "annotated" else ANNOTATION.sub("", solution)
                out[split].append({**base, "format": fmt, "text": text, "label": "clean", "evidence": None})
            if not sites:
                continue
            m, result = rng.choice(sites)
            wrong = wrong_value(result, rng)
            start = m.end()
            planted_annotated = (solution[:m.start()] + f"<<{m.group(1)}={wrong}>>" + wrong
                                 + solution[start + len(result):])
            before = solution[:m.start()]
            lhs = re.split(r"\n|(?<=[.:?!,])\s+", before.rstrip())[-1]
            evidence = f"{ANNOTATION.sub('', lhs).strip()} {wrong}".strip()
            planted_plain = (ANNOTATION.sub("", solution[:m.start()]) + wrong
                             + ANNOTATION.sub("", solution[start + len(result):]))
            for fmt, text in (("plain", planted_plain), ("annotated", planted_annotated)):
                out[split].append({**base, "format": fmt, "text": text, "label": "planted", "evidence": evidence,
                                   "true_value": result, "planted_value": wrong,
                                   "equation": f"{m.group(1)}={wrong}"})
    return out


# "a op b = c" as a trace states it (plain or LaTeX operators), binary, both sides plain numbers.
TRACE_EQUATION = re.compile(
    r"(?<![\w.^_{}\\/*+\-])(\d[\d,]*(?:\.\d+)?)\s*(\+|-|\\times|\\cdot|\*|×|÷|\\div|/)\s*(\d[\d,]*(?:\.\d+)?)\s*=\s*"
    r"(\d[\d,]*(?:\.\d+)?)(?![\d^_{(\w]|\.\d|\s*[\^/*]|\s*\\(?:times|cdot|div|frac))")
OPS = {"+": "+", "-": "-", "\\times": "*", "\\cdot": "*", "*": "*", "×": "*", "÷": "/", "\\div": "/", "/": "/"}


def trace_equations(text: str) -> list[re.Match]:
    found = []
    for m in TRACE_EQUATION.finditer(text):
        a, op, b, c = m.group(1), m.group(2), m.group(3), m.group(4)
        if any(re.fullmatch(r"\d{1,3}(,\d{3})+|\d+(\.\d+)?", x) is None for x in (a, b, c)):
            continue
        value = safe_eval(f"{a.replace(',', '')}{OPS[op]}{b.replace(',', '')}")
        if value is not None and close(value, float(c.replace(",", ""))):
            found.append(m)
    return found


def qwen_rows(shared: Path, rng: random.Random) -> dict[str, list[dict]]:
    out = {s: [] for s in SPLITS}
    corrections = careful_label_corrections()["qwen25_14b"]
    for r in read_jsonl(shared / "traces" / "math500_qwen25_14b_shortcot.jsonl"):
        idx = int(r["idx"])
        for k, (text, score) in enumerate(zip(r["code"], r["score"], strict=True)):
            label = corrections.get(idx, bool(score))
            if not label:
                continue
            split = split_of(math500_key(idx))
            base = {"source": "math500_qwen25_14b_shortcot", "source_index": idx, "sample_index": k,
                    "problem": r["question"], "final_answer": r["answer"], "format": "qwen_shortcot"}
            out[split].append({**base, "text": text, "label": "clean", "evidence": None})
            sites = trace_equations(text)
            if not sites:
                continue
            m = rng.choice(sites)
            wrong = wrong_value(m.group(4), rng)
            planted = text[:m.start(4)] + wrong + text[m.end(4):]
            evidence = text[m.start():m.start(4)] + wrong
            out[split].append({**base, "text": planted, "label": "planted", "evidence": evidence,
                               "true_value": m.group(4), "planted_value": wrong, "offset": m.start(),
                               "equation": evidence})
    return out


def build_arithmetic(shared: Path, gsm8k_per_split: int) -> dict[str, list[dict]]:
    rng = random.Random(SEED + 2)
    gsm, qwen = gsm8k_rows(shared, gsm8k_per_split, rng), qwen_rows(shared, rng)
    out = {}
    for split in SPLITS:
        out[split] = gsm[split] + qwen[split]
        for n, row in enumerate(out[split]):
            row["row_id"] = f"{split}-{n:05d}"
    return out


# ------------------------------------------------------------------------------------------
# set C: verify rows in real formats (issue 19)
# ------------------------------------------------------------------------------------------

def careful_label_corrections() -> dict[str, dict[int, bool]]:
    """The file labels that a hand check found wrong (bench/RESULTS.md, 'verify: agreement
    with real labels'): reference-format misgrades and a truncated output labelled True."""
    return {"qwen25_14b": {184: False, 198: True, 217: True, 284: True},
            "skyt1_27b": {284: True, 278: True, 393: True, 355: False}}


BOXED = re.compile(r"\\boxed\{")


def last_boxed(text: str) -> tuple[int, int, str] | None:
    """(start of '\\boxed{', end after the closing brace, content) of the last box."""
    starts = [m.start() for m in BOXED.finditer(text)]
    if not starts:
        return None
    start = starts[-1]
    depth, k = 0, start + len("\\boxed")
    for k in range(start + len("\\boxed"), len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return start, k + 1, text[start + len("\\boxed{"):k]
    return None


def unbox_all(text: str) -> str:
    while (box := last_boxed(text)) is not None:
        start, end, content = box
        text = text[:start] + content + text[end:]
    return text


def replace_last_box(text: str, content: str) -> str:
    start, end, _ = last_boxed(text)
    return text[:start] + "\\boxed{" + content + "}" + text[end:]


PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
UNITS = [("degrees", "^\\circ"), ("cm", "\\text{ cm}"), ("inches", "\\text{ inches}"), ("feet", "\\text{ feet}"),
         ("meters", "\\text{ meters}"), ("dollars", "\\text{ dollars}"), ("cents", "\\text{ cents}"),
         ("miles", "\\text{ miles}"), ("hours", "\\text{ hours}"), ("minutes", "\\text{ minutes}"),
         ("seconds", "\\text{ seconds}"), ("square units", "\\text{ square units}"), ("units", "\\text{ units}")]
HANDWRITTEN_TEXT = [
    # (reference, boxed answer, correct?) — \text{} references of the kinds issue 19 names.
    ("\\text{June 20}", "June 20", True), ("\\text{June 20}", "\\text{June 20}", True),
    ("\\text{June 20}", "June 21", False),
    ("\\text{1:03 PM}", "1:03 PM", True), ("\\text{1:03 PM}", "1:03 \\text{ PM}", True),
    ("\\text{1:03 PM}", "1:30 PM", False),
    ("\\text{A, D}", "A, D", True), ("\\text{A, D}", "A,D", True), ("\\text{A, D}", "A, C", False),
    ("\\text{B, C, E}", "B, C, E", True), ("\\text{B, C, E}", "B, E", False), ("\\text{Tuesday}", "Tuesday", True),
    ("\\text{Tuesday}", "Wednesday", False), ("\\text{March 3}", "March 3", True),
    ("\\text{10:45 AM}", "10:45 AM", True),
]


def verify_rows(shared: Path, per_class: int) -> dict[str, list[dict]]:
    rng = random.Random(SEED + 3)
    math500 = {i: r for i, r in enumerate(read_jsonl(shared / "math500" / "test.jsonl"))}
    corrections = careful_label_corrections()
    outputs = []  # (teacher, idx, sample, text, careful label)
    for teacher, name in (("qwen25_14b", "math500_qwen25_14b_shortcot"), ("skyt1_27b", "math500_skyt1_27b_longcot")):
        for r in read_jsonl(shared / "traces" / f"{name}.jsonl"):
            idx = int(r["idx"])
            for k, (text, score) in enumerate(zip(r["code"], r["score"], strict=True)):
                outputs.append((teacher, idx, k, text, corrections[teacher].get(idx, bool(score))))
    rows = defaultdict(list)

    def add(cls, teacher, idx, k, reference, completion, label, rule, origin="transformed", finish_reason=None):
        rows[cls].append({"class": cls, "teacher": teacher, "source_index": idx, "sample_index": k,
                          "problem": math500[idx]["problem"] if idx >= 0 else None, "reference": reference,
                          "completion": completion,
                          "finish_reason": finish_reason, "label": label, "label_rule": rule, "origin": origin})

    def closed(text):  # outputs whose reasoning block (if any) is closed
        return "<|begin_of_thought|>" not in text or "<|end_of_thought|>" in text

    boxed = [(t, i, k, x, y) for t, i, k, x, y in outputs if closed(x) and last_boxed(x)]
    numeric = [o for o in boxed if PLAIN_NUMBER.match(math500[o[1]]["answer"].strip())
               and PLAIN_NUMBER.match(last_boxed(o[3])[2].strip())]
    same = "the final answer's content is unchanged, so the careful label of the real output stands"
    for t, i, k, x, y in outputs:
        if closed(x):
            add("real_control", t, i, k, math500[i]["answer"], x, y, "careful label (file score, hand corrections)",
                "real")
        if "\\text" in math500[i]["answer"] and closed(x):
            add("text_reference_real", t, i, k, math500[i]["answer"], x, y, "careful label", "real")
        if "The correct answer is" in x or "the correct answer is" in x:
            add("correct_answer_is_real", t, i, k, math500[i]["answer"], x, y, "careful label", "real")
        if "<|begin_of_thought|>" in x and "<|end_of_thought|>" not in x:
            add("unclosed_real", t, i, k, math500[i]["answer"], x, False,
                "reasoning block never closed and no finish_reason: truncated, so no final answer", "real")
    for t, i, k, x, y in boxed:
        answer = last_boxed(x)[2].strip()
        ref = math500[i]["answer"]
        body = unbox_all(x).rstrip()
        add("final_answers_are", t, i, k, ref, body + f"\n\nTherefore, the final answers are: {answer}.", y, same)
        template = rng.choice(["\n\n**Final Answer:** {a}", "\n\n**Final Answer:**\n\n{a}",
                               "\n\n**Final Answer**\n\nThe answer is {a}.", "\n\n**Final Answer:** The result is {a}"])
        add("final_answer_bold", t, i, k, ref, body + template.format(a=answer), y, same)
        echo = "Please reason step by step, and put your final answer within \\boxed{}."
        if rng.random() < 0.5:
            add("echoed_instruction", t, i, k, ref, f"{echo}\n\n{body}\n\nThe answer is {answer}.", y, same)
        else:
            echoed = f"{x.rstrip()}\n\n(As instructed, the final answer is within \\boxed{{}}.)"
            add("echoed_instruction", t, i, k, ref, echoed, y, same)
        add("reference_trailing_period", t, i, k, ref.rstrip() + ".", x, y,
            "a trailing period in the reference is punctuation, not part of the answer")
        phrase = rng.choice(
            ["The correct answer is {a}.", "So the correct answer is {a}.", "The correct answer is: {a}"]
        )
        add("correct_answer_is", t, i, k, ref, body + "\n\n" + phrase.format(a=answer), y, same)
        if re.fullmatch(r"\(\s*[^()\[\]]+,[^()\[\]]+\)", answer.replace("\\left", "").replace("\\right", "")) and \
                re.search(r"ordered|pair|point|coordinates|triple|\(a,\s*b", math500[i]["problem"]) and \
                "infty" not in ref:
            inner = answer.replace("\\left", "").replace("\\right", "").strip()[1:-1]
            add("tuple_parens", t, i, k, ref, replace_last_box(x, inner), y,
                "an ordered tuple written without its parentheses names the same tuple")
        if "\\text" in ref:
            pass
    for t, i, k, x, y in numeric:
        ref = math500[i]["answer"].strip()
        answer = last_boxed(x)[2].strip()
        problem = math500[i]["problem"]
        add("percent", t, i, k, ref + "\\%", x, y,
            "the reference's \\% is a unit: 7.2\\% and 7.2 state the same answer")
        add("percent", t, i, k, ref, replace_last_box(x, answer + "\\%"), y, "the answer's \\% is a unit")
        unit = next((u for word, u in UNITS if re.search(rf"\b{word}\b", problem)), None)
        if unit:
            add("units_in_box", t, i, k, ref, replace_last_box(x, answer + unit), y,
                "a unit inside the box is not part of the number")
        add("text_wrapped_reference", t, i, k, f"\\text{{{ref}}}", x, y, "\\text{} around the reference is typesetting")
    # Multiple choice: MATH-500's lettered problems, every common letter format.
    for t, i, k, x, _label in boxed:
        ref = math500[i]["answer"]
        letter = re.fullmatch(r"\\text\{\((\w)\)\}", ref.strip())
        if not letter:
            continue
        L = letter.group(1)
        ok = last_boxed(x)[2].strip().strip("()").replace("\\text{", "").replace("}", "").strip("()") == L
        body = unbox_all(x).rstrip()
        for fmt in ("\\boxed{{{L}}}", "\\boxed{{({L})}}", "\\boxed{{\\text{{({L})}}}}", "The correct answer is ({L}).",
                    "The answer is **({L})**."):
            for reference in (ref, f"({L})", L):
                add("multiple_choice", t, i, k, reference, body + "\n\n" + fmt.format(L=L), ok,
                    "the letter in the completion equals the reference letter" if ok else "letters differ")
    for reference, answer, label in HANDWRITTEN_TEXT:
        add("text_reference_handwritten", "handwritten", -1, -1, reference,
            f"Reading the schedule, the answer is \\boxed{{{answer}}}.", label, "read by hand", "handwritten")
    # Unclosed <think> blocks with no finish_reason, made from closed Sky-T1 reasoning.
    for t, i, k, x, _label in outputs:
        if "<|end_of_thought|>" in x and "<|begin_of_thought|>" in x:
            reasoning = x.split("<|begin_of_thought|>", 1)[1].split("<|end_of_thought|>", 1)[0]
            cut = reasoning if rng.random() < 0.5 else reasoning[: int(len(reasoning) * rng.uniform(0.5, 0.95))]
            add("unclosed_think", t, i, k, math500[i]["answer"], "<think>\n" + cut.strip(), False,
                "<think> never closed and no finish_reason: truncated, so no final answer")
    # Sample each class, then split by source problem.
    out = {s: [] for s in SPLITS}
    for cls in sorted(rows):
        by_split = defaultdict(list)
        for row in rows[cls]:
            split = split_of(math500_key(row["source_index"])) if row["source_index"] >= 0 else \
                ("dev" if len(by_split["dev"]) <= len(by_split["heldout"]) else "heldout")
            by_split[split].append(row)
        for split in SPLITS:
            group = by_split[split]
            # Both labels where a class has both; short (Qwen) outputs preferred to keep the files small.
            rng.shuffle(group)
            group.sort(key=lambda r: (r["teacher"] == "skyt1_27b" and cls not in ("unclosed_real", "unclosed_think")))
            picked = group[:per_class] if cls != "real_control" else group[: per_class * 2]
            out[split] += [{**row, "split": split} for row in picked]
    for split in SPLITS:
        for n, row in enumerate(out[split]):
            row["row_id"] = f"{split}-{n:05d}"
    return out


# ------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shared", type=Path, help="the shared data folder (holds gsm8k/, math500/, evalsets/, traces/)")
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--dedup-gsm8k", type=int, default=150, help="GSM8K test problems per split (set A pairs)")
    parser.add_argument("--dedup-math", type=int, default=80, help="MATH-500 problems per split (set A pairs)")
    parser.add_argument("--pool-gsm8k", type=int, default=1000, help="clean GSM8K train problems per split (pool)")
    parser.add_argument("--arith-gsm8k", type=int, default=200, help="GSM8K train solutions per split (set B)")
    parser.add_argument("--verify-per-class", type=int, default=40, help="rows per class per split (set C)")
    args = parser.parse_args()
    out, log = args.out, []
    pairs = build_dedup_pairs(args.shared, {"gsm8k_test": args.dedup_gsm8k, "math500": args.dedup_math})
    pools = build_decontamination(args.shared, out, args.pool_gsm8k, {"gsm8k_test": 40, "competition": 25}, log)
    arith = build_arithmetic(args.shared, args.arith_gsm8k)
    verify = verify_rows(args.shared, args.verify_per_class)
    for split in SPLITS:
        write_jsonl(out / f"dedup_pairs.{split}.jsonl.gz", pairs[split])
        write_jsonl(out / f"decontam_pool.{split}.jsonl.gz", pools[split])
        write_jsonl(out / f"arith_traces.{split}.jsonl.gz", arith[split])
        write_jsonl(out / f"verify_rows.{split}.jsonl.gz", verify[split])
        for name, rows, key in (("dedup_pairs", pairs, "class"), ("decontam_pool", pools, "class"),
                                ("arith_traces", arith, "label"), ("verify_rows", verify, "class")):
            counts = Counter(r[key] for r in rows[split])
            log.append(f"{name}.{split}: {len(rows[split])} rows; "
                       + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    (out / "BUILD_LOG.txt").write_text("\n".join(log) + "\n")
    print("\n".join(log))


if __name__ == "__main__":
    main()
