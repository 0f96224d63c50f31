"""Human review: a sample of traces out to Label Studio, the reviewers' verdicts back in as
the `review_verdict` and `review_note` columns (the `review_filter` operator)."""
