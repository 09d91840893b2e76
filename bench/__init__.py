"""Benchmarks: commands that print figures, compared side by side in one run."""
