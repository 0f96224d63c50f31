"""The `verify` operator: extract each trace's final answer and check it (see
`curate.answers.check`, which does the work).

Math rows are compared with `reference_answer` by math-verify in worker processes; code
rows are run against the problem's `tests` in the sandbox. Every row gets a
`verify_status`; `correct` is null when the verifier could not decide (a math timeout,
an unparsable answer, a missing reference), so grading never counts those as failures.
Code that runs past its time limit counts as failed (HumanEval's convention).
"""

from __future__ import annotations

import polars as pl

from curate.answers.check import VERIFY_COLUMNS, AnswerChecker, VerifyConfig, checked_columns
from curate.core.operator import Operator, StepContext, register

__all__ = ["Verify", "VerifyConfig"]


@register
class Verify(Operator[VerifyConfig]):
    """Extract the final answer of each trace and check it against the reference (math)
    or the tests (code); adds extracted_answer, extraction_method, correct, verify_status
    and verify_detail."""

    name = "verify"
    Config = VerifyConfig
    scope = "batch"
    default_chunk_size = 20_000
    adds = tuple(VERIFY_COLUMNS)

    def input_columns(self) -> set[str]:
        return checked_columns(self.config)

    def setup(self, ctx: StepContext) -> None:
        from curate.answers.cache import VerdictCache

        self._checker = AnswerChecker(self.config, VerdictCache.in_dir(ctx.cache_dir))

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        if not hasattr(self, "_checker"):
            self.setup(ctx)
        checked = self._checker.check(frame, ctx.count)
        ctx.on_progress(len(frame))
        return checked
