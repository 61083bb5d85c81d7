"""Benchmark data (SciFact, Citation-Integrity in MultiVerS format) and its download."""
