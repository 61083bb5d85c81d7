"""Benchmark helpers for drift; ``evidently_compare.py`` runs in a separate environment."""
