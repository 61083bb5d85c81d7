"""The model folder format: where the Hugging Face files and ``citeops.json`` live, and
reading and writing them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from citeops.tasks.errors import CiteopsError

HF_DIR_NAME = "hf_model"


META_FILE = "citeops.json"  # written beside the HF files: labels, max_length, base model


class ModelLoadError(CiteopsError):
    """A model URI or folder cannot be resolved or loaded."""


def check_loading_info(folder: Path, info: dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights do not match its architecture.

    ``info`` is what ``from_pretrained(..., output_loading_info=True)`` returns. A missing
    weight would be randomly initialised (for example a folder without ``classifier.*``
    would serve a random head), an unexpected one means the files belong to another
    architecture; either way the model is not the one that was trained and evaluated.

    Raises:
        ModelLoadError: listing the missing, unexpected and mismatched weights.
    """
    problems = []
    for key, what in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "unexpected"),
        ("mismatched_keys", "mismatched"),
    ):
        names = sorted(str(name) for name in info.get(key) or ())
        if names:
            shown = ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else ""
            )
            problems.append(f"{what} weights: {shown}")
    if info.get("error_msgs"):
        problems.append("errors: " + "; ".join(str(m) for m in info["error_msgs"]))
    if problems:
        raise ModelLoadError(
            f"{folder}: the checkpoint does not match the model ({'; '.join(problems)}); "
            "refusing to load it with randomly initialised weights. Use a folder written "
            "by training (save_pretrained of the fine-tuned classifier)."
        )


def read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def find_hf_dir(root: Path) -> Path:
    """The folder under ``root`` holding the Hugging Face files (``config.json``)."""
    if (root / "config.json").is_file():
        return root
    for candidate in sorted(root.rglob("config.json")):
        if (candidate.parent / "tokenizer_config.json").is_file():
            return candidate.parent
    raise ModelLoadError(f"{root}: no Hugging Face model folder inside")


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``citeops.json`` (labels, max_length, base model, ...) beside the HF files."""
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))


def save_hf_folder(model: Any, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> Path:
    """``save_pretrained`` model + tokenizer into ``folder`` and add the meta file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_meta(folder, meta)
    return folder


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


PARITY_FILE = "parity-sample.json"  # the (claim, evidence) pairs export parity used


CLASS_OFFSETS_KEY = "class_offsets"  # citeops.json: label -> logit offset already in the bias


def class_offsets(meta: dict[str, Any]) -> dict[str, float]:
    """The per-label logit offsets a model's ``citeops.json`` records as baked into its
    output bias (tasks/train/offsets.py); empty for a model without them. For the record
    only: the weights already apply them, so nothing at inference reads this."""
    return {str(k): float(v) for k, v in (meta.get(CLASS_OFFSETS_KEY) or {}).items()}
