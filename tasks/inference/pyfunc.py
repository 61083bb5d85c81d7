"""The MLflow pyfunc wrapper of a trained verifier (what ``mlflow.pyfunc.load_model`` returns).

Its only artifact, ``hf_model``, is a ``save_pretrained`` folder (model, tokenizer and
``citeops.json``); :func:`tasks.inference.predictor.load_verifier` reads that folder directly,
without going through pyfunc. Loading through pyfunc needs citeops installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc

from citeops.tasks.classifier.artifact import find_hf_dir
from citeops.tasks.inference.predictor import ClaimVerifier


class ClaimVerifierPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[claim, evidence]) -> DataFrame[label, p_<LABEL>...]``."""

    def load_context(self, context: Any) -> None:

        self.verifier = ClaimVerifier.from_dir(find_hf_dir(Path(context.artifacts["hf_model"])))

    # no type hints on predict: MLflow would try to derive a schema from them
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        import pandas as pd

        frame = pd.DataFrame(model_input)
        missing = {"claim", "evidence"} - set(frame.columns)
        if missing:
            raise ValueError(f"input needs columns claim and evidence; missing {sorted(missing)}")
        claims = frame["claim"].astype(str).tolist()
        evidences = frame["evidence"].astype(str).tolist()
        probs = self.verifier.predict_proba(claims, evidences)
        labels = self.verifier.labels
        out = pd.DataFrame({f"p_{label}": probs[:, i] for i, label in enumerate(labels)})
        out.insert(0, "label", [labels[i] for i in probs.argmax(axis=1)] if len(probs) else [])
        return out
