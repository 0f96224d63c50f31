"""Teacher generation: problem table -> trace table (see `operator.Generate`)."""
