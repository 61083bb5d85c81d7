"""Helpers for serving tests: a tiny model folder and a real uvicorn server in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import free_port


def save_tiny_model(folder: Path, seed: int = 0, vocab_size: int | None = None) -> Path:
    """A tiny random BERT (the test profile's base model) saved with save_pretrained.

    ``vocab_size`` smaller than the tokenizer's makes a model that raises on real input.
    """
    from citeops.configs.settings import load_settings
    from citeops.tasks.classifier.base import load_base

    settings = load_settings()
    model, tokenizer = load_base(settings.model, seed=seed)
    if vocab_size is not None:  # the same architecture (cross or siamese head), fewer words
        config = model.config
        config.vocab_size = vocab_size
        model = type(model)(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@contextmanager
def running_server(app: Any, ready_path: str = "/ready", timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port in a thread; yield its base URL.

    Waits until ``ready_path`` answers 200; stops the server (and its lifespan) on exit.
    """
    import httpx
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise TimeoutError(f"server at {base} not ready within {timeout:.0f} s")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def strip_weights(folder: Path, prefix: str, extra: str | None = None) -> Path:
    """Remove every weight named ``prefix*`` from ``model.safetensors`` (and add an
    unexpected one named ``extra``): a checkpoint that no longer matches its config."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    weights = {k: v for k, v in load_file(path).items() if not k.startswith(prefix)}
    if extra:
        weights[extra] = next(iter(weights.values())).clone()
    save_file(weights, path, metadata={"format": "pt"})
    return folder
