"""curate: build reasoning-distillation datasets from verified, graded, deduplicated teacher traces."""

__version__ = "0.1.0"
