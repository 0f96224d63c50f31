"""Row selection that any stage can use: random samples of problems or traces."""

from __future__ import annotations

import polars as pl
from pydantic import Field, model_validator

from curate.core.operator import Filter, OperatorConfig, register
from curate.schema import content_hash


class SampleConfig(OperatorConfig):
    n: int | None = Field(None, ge=1, description="Keep this many groups (problems by default).")
    fraction: float | None = Field(None, gt=0, le=1, description="Or keep this share of groups.")
    by: str = Field("problem_id", description="Column whose distinct values are sampled.")
    seed: int = Field(0, description="Same seed, same sample, whatever the row order.")

    @model_validator(mode="after")
    def _one_size(self) -> SampleConfig:
        if (self.n is None) == (self.fraction is None):
            raise ValueError("give exactly one of n or fraction")
        return self


@register
class Sample(Filter):
    """Keep a seeded random subset of groups (e.g. problems); the rest are rejected
    as 'not_sampled'. The draw ranks a hash of each group key, so it does not depend
    on row order or chunking and a larger n keeps a superset of a smaller one."""

    name = "sample"
    Config = SampleConfig
    scope = "global"

    def input_columns(self) -> set[str]:
        return {self.config.by}

    def apply(self, frame: pl.DataFrame, ctx) -> pl.DataFrame:
        config = self.config
        key = pl.col(config.by).cast(pl.String)
        groups = frame.select(key.unique()).to_series()
        # sha256, not polars' hash: the sample must not change with the polars version.
        draw = pl.Series([content_hash(str(config.seed), g) for g in groups.to_list()])
        rank = draw.rank("ordinal")
        size = config.n if config.n is not None else round(config.fraction * len(groups))
        chosen = groups.filter(rank <= size)
        return frame.with_columns(
            reject_reason=pl.when(key.is_in(chosen.implode())).then(None).otherwise(pl.lit("not_sampled"))
        )
