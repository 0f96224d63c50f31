"""RowSampler per decoding step: the top-candidates shortcut against sorting the whole
vocabulary (the sampler's plain definition, which it replaced), same logits, same seeds.

    python bench/sampler.py                      # Gemma 3's vocabulary, 30 rows, one thread
    python bench/sampler.py --vocab 49152 --rows 32 --threads 2

Logits are drawn from a heavy-tailed distribution so the nucleus (top_p 0.95) spans tens
to hundreds of tokens, as small models' do at temperature 0.7. The sides alternate,
`--repeats` times; the script checks both pick the same tokens and exits 1 if not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from curate.llm.backends.hf_transformers import RowSampler


def full_sort_step(logits: torch.Tensor, generators: list[torch.Generator], temperature: float, top_p: float):
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(-1) - sorted_probs >= top_p, 0.0)
    cdf = sorted_probs.cumsum(-1)
    draws = torch.stack([torch.rand((), generator=g) for g in generators])
    position = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(1), right=True)
    return order.gather(1, position.clamp_(max=cdf.shape[1] - 1)).squeeze(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=262144)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top-p", type=float, default=0.95)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Student-t logits: a few strong candidates and a long tail, like a small LM's
    steps = [torch.distributions.StudentT(2.0).sample((args.rows, args.vocab)) * 1.5 for _ in range(args.steps)]
    seeds = list(range(args.rows))
    times: dict[str, list[float]] = {"full sort": [], "candidates": []}
    for repeat in range(args.repeats):
        for side in (["full sort", "candidates"] if repeat % 2 == 0 else ["candidates", "full sort"]):
            started = time.perf_counter()
            if side == "full sort":
                generators = [torch.Generator().manual_seed(s) for s in seeds]
                picks = [full_sort_step(x, generators, 0.7, args.top_p).tolist() for x in steps]
                reference = picks
            else:
                sampler = RowSampler(seeds, 0.7, args.top_p, "cpu")
                picks = [sampler(None, x).argmax(-1).tolist() for x in steps]
                ours = picks
            times[side].append((time.perf_counter() - started) / args.steps)
    same = ours == reference
    print(f"vocab {args.vocab}, {args.rows} rows, top_p {args.top_p}, {args.threads} thread(s), "
          f"{args.repeats} alternating repeats of {args.steps} steps; same tokens: {same}")
    for side, values in times.items():
        print(f"  {side:10s}: median {statistics.median(values) * 1000:7.1f} ms/step "
              f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")
    print(f"  speed-up: {statistics.median(times['full sort']) / statistics.median(times['candidates']):.1f}x")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
