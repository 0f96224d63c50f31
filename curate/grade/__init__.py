"""Difficulty grading: pass rates, confidence intervals, bands, adaptive sampling."""
