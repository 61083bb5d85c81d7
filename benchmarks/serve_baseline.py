"""The benchmark baseline: an AI4citations-style server.

One transformers ``pipeline("text-classification")`` call per request, fp32, one request
at a time (Gradio's default concurrency limit of 1), evidence as ``text`` and the claim
as ``text_pair``. Run: ``python -m citeops.benchmarks.serve_baseline --model DIR --port PORT``.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from pydantic import BaseModel


class Pair(BaseModel):
    claim: str
    evidence: str


def create_baseline_app(model_dir: str) -> Any:
    """A FastAPI app with ``POST /predict`` ({claim, evidence}) and ``GET /health``."""
    from fastapi import FastAPI
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=-1)
    lock = threading.Lock()
    app = FastAPI(title="baseline: per-request transformers pipeline")

    @app.post("/predict")
    def predict(pair: Pair) -> dict[str, Any]:
        with lock:
            scores = pipe(
                {"text": pair.evidence, "text_pair": pair.claim}, top_k=None, truncation=True
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
