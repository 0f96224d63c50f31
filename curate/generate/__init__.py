"""Teacher generation: problem table -> trace table (see `operators.Generate`)."""
