"""Where PyTorch serves (serve.device): resolution, the error without CUDA, CPU results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.inference.engines import DeviceUnavailable, resolve_device
from citeops.tasks.inference.loading import load_verifier
from citeops.tasks.inference.predictor import ClaimVerifier
from tests.harness import run_citeops
from tests.integration.serve_support import save_tiny_model

PAIRS = [
    ("Aspirin lowers the risk of colorectal cancer.", "Aspirin use was linked to fewer cancers."),
    ("The protein is expressed in neurons.", "We describe a bacterial membrane transporter."),
]


def cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = pytest.mark.skipif(cuda_visible(), reason="checks a machine without a CUDA GPU")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_auto_resolves_to_cpu_here_and_to_cuda_where_a_gpu_is_visible() -> None:
    assert resolve_device("auto", "bf16") == "cpu"
    assert resolve_device("auto", "bf16", cuda=True) == "cuda"
    assert resolve_device("auto", "int8", cuda=True) == "cpu"  # dynamic int8: CPU only
    assert resolve_device("cpu", "bf16", cuda=True) == "cpu"
    assert resolve_device("cuda", "fp32", cuda=True) == "cuda"
    with pytest.raises(DeviceUnavailable, match="int8 runs on the CPU only"):
        resolve_device("cuda", "int8", cuda=True)


def test_cuda_without_a_gpu_stops_serve_with_one_line(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITEOPS_SERVE__DEVICE", "cuda")
    code, _, err = run_citeops(["serve", "--model-uri", str(tiny)], capsys)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "serve.device is cuda (CITEOPS_SERVE__DEVICE) but torch sees no CUDA GPU" in err


def test_a_deploy_asking_for_cuda_without_a_gpu_is_refused_by_the_loader(tiny: Path) -> None:
    settings = load_settings(serve={"device": "cuda", "runtime": "torch"})
    with pytest.raises(DeviceUnavailable, match="set it to auto or cpu"):
        load_verifier(str(tiny), settings, runtime="torch")


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_predictions_on_the_cpu_are_those_of_the_plain_model(tiny: Path, device: str) -> None:
    settings = load_settings(serve={"device": device, "precision": "fp32"})
    served = load_verifier(str(tiny), settings, runtime="torch")
    plain = ClaimVerifier.from_dir(tiny)
    assert served.runtime_device == "cpu" and next(served.model.parameters()).device.type == "cpu"
    claims, evidences = zip(*PAIRS, strict=True)
    expected = plain.predict_proba(claims, evidences)
    np.testing.assert_array_equal(served.predict_proba(claims, evidences), expected)
    encoded = [served.encode_pair(c, e) for c, e in PAIRS]
    np.testing.assert_allclose(served.predict_encoded(encoded), expected, atol=1e-6)


def test_auto_without_an_export_says_pytorch_serves_and_why(tiny: Path) -> None:
    served = load_verifier(str(tiny), load_settings(), runtime="auto")
    assert served.runtime == "torch" and served.runtime_basis == "no_export"
    assert "no parity-checked ONNX export" in served.runtime_reason
