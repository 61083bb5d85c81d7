"""Run Evidently's DataDriftPreset on two JSONL files and print timings and verdicts as JSON.

Runs in a separate environment (``evidently==0.7.23``, ``pandas==2.3.3``), not the project's
(pandas 3): ``python evidently_compare.py REFERENCE.jsonl CURRENT.jsonl``. Columns:
``claim``, ``evidence`` (text), ``claim_tokens``, ``evidence_tokens``, ``confidence``
(numeric), ``prediction`` (categorical). Imports nothing from citeops.
"""

from __future__ import annotations

import json
import re
import sys
import time

TEXT = ["claim", "evidence"]
NUMERIC = ["claim_tokens", "evidence_tokens", "confidence"]
CATEGORICAL = ["prediction"]


def main(reference_path: str, current_path: str) -> dict:
    started = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter()
    reference = pd.read_json(reference_path, lines=True)
    current = pd.read_json(current_path, lines=True)
    loaded = time.perf_counter()
    definition = DataDefinition(
        text_columns=TEXT, numerical_columns=NUMERIC, categorical_columns=CATEGORICAL
    )
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    done = time.perf_counter()
    columns, dataset_drift = {}, None
    for test in snapshot.dict()["tests"]:
        params = test["metric_config"]["params"]
        if "column" in params:
            score = re.search(
                r"Drift score is (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", test["description"]
            )
            columns[params["column"]] = {
                "method": params.get("method"),
                "threshold": params.get("threshold"),
                "score": float(score.group(1)) if score else None,
                "drift": test["status"] == "FAIL",
            }
        elif params.get("type", "").endswith("DriftedColumnsCount"):
            dataset_drift = test["status"] == "FAIL"
    return {
        "rows_reference": len(reference),
        "rows_current": len(current),
        "import_seconds": round(imported - started, 2),
        "load_seconds": round(loaded - imported, 2),
        "seconds": round(done - loaded, 2),
        "dataset_drift": dataset_drift,
        "columns": columns,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
