"""The work of citeops: plain typed functions grouped by stage, with thin Prefect task wrappers."""
