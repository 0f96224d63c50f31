"""Everything about answers, for any stage: extraction (`extract`), spellings
(`normalise`), math-verify comparison in worker processes (`math`), the verdict cache
reused across runs (`cache.VerdictCache`), the code sandbox (`sandbox`) and the
frame-level check the `verify` operator wraps (`check`)."""
