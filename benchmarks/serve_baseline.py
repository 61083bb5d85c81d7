"""The benchmark baseline: an AI4citations-style server.

One transformers ``pipeline("text-classification")`` call per request, fp32, one request
at a time (Gradio's default concurrency limit of 1), evidence as ``text`` and the claim
as ``text_pair``. The model's own input preprocessing (recorded in its ``citeops.json``:
evidence selection and max length) is applied, so that both servers feed the same model
the same inputs and label agreement measures the serving path, not a preprocessing gap.
Run: ``python -m citeops.benchmarks.serve_baseline --model DIR --port PORT``.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class Pair(BaseModel):
    claim: str
    evidence: str


def create_baseline_app(model_dir: str) -> Any:
    """A FastAPI app with ``POST /predict`` ({claim, evidence}) and ``GET /health``."""
    from fastapi import FastAPI
    from transformers import pipeline

    from citeops.tasks.classifier.artifact import META_FILE
    from citeops.tasks.classifier.preprocess import EvidenceSelection, EvidenceSelector

    # as a user's app loads a model citeops registered (a siamese head is remote code)
    pipe = pipeline(
        "text-classification",
        model=model_dir,
        tokenizer=model_dir,
        device=-1,
        trust_remote_code=True,
    )
    meta_path = Path(model_dir) / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    max_length = int(meta.get("max_length") or pipe.tokenizer.model_max_length)
    selector = EvidenceSelector(EvidenceSelection.from_meta(meta), pipe.tokenizer, max_length)
    lock = threading.Lock()
    app = FastAPI(title="baseline: per-request transformers pipeline")

    @app.post("/predict")
    def predict(pair: Pair) -> dict[str, Any]:
        with lock:
            evidence = selector.select(pair.claim, pair.evidence)
            scores = pipe(
                {"text": evidence, "text_pair": pair.claim},
                top_k=None,
                truncation=True,
                max_length=max_length,
            )
        probabilities = {row["label"]: float(row["score"]) for row in scores}
        return {"label": max(probabilities, key=probabilities.get), "probabilities": probabilities}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_baseline_app(args.model), host=args.host, port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
