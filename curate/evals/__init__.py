"""Evaluate a model (teacher or trained student) on held-out problems: pass@k and more."""

from curate.evals.evaluate import EvalConfig, EvalReport, evaluate, load_eval_set
from curate.evals.metrics import pass_at_k

__all__ = ["EvalConfig", "EvalReport", "evaluate", "load_eval_set", "pass_at_k"]
