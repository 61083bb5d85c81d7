"""Prefect flows (wiring only) and the `citeops` command line."""
