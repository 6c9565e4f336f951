"""The GPU path: training with bf16 autocast and channels-last, inference matching the CPU's. Skipped without
a CUDA GPU (the development machine has none: these ran only where one was lent, see README)."""
import numpy as np
import pytest
import torch

from audit.checkpoint import load_model
from audit.inference import predict
from audit.models import ModelConfig
from audit.pipeline import train_model
from audit.steps import mixed_precision
from audit.training import TrainConfig, default_error_options


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu_is_finite_and_infers_like_the_cpu(tiny_dataset, tmp_path):
    result = train_model(tiny_dataset, tmp_path / "m", ModelConfig(method="dbvae", image_size=16, latent_dim=8),
                         TrainConfig(epochs=2, batch_size=8, device="cuda", **default_error_options("dbvae", 2)),
                         progress=False)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    if torch.cuda.is_bf16_supported():
        assert mixed_precision(torch.device("cuda")) == torch.bfloat16
    gpu = predict(load_model(tmp_path / "m", torch.device("cuda"))[0], tiny_dataset.images, torch.device("cuda"))
    cpu = predict(load_model(tmp_path / "m", torch.device("cpu"))[0], tiny_dataset.images, torch.device("cpu"))
    # Inference runs in fp32 on both (no autocast outside training); TF32 convolutions differ slightly.
    for key in ("logit", "mu"):
        assert np.allclose(gpu[key], cpu[key], atol=1e-2), key


def test_the_cpu_never_autocasts():
    assert mixed_precision(torch.device("cpu")) is None


def test_device_choice(monkeypatch):
    from audit.errors import DebiasError
    from audit.models import pick_device

    monkeypatch.setenv("DEBIAS_DEVICE", "cpu")
    assert pick_device(None) == torch.device("cpu")
    monkeypatch.setenv("DEBIAS_DEVICE", "abacus")
    with pytest.raises(DebiasError, match="unknown device 'abacus'; use cpu, cuda or cuda:N"):
        pick_device(None)
    assert pick_device("cpu") == torch.device("cpu")          # --device wins over the environment
    if not torch.cuda.is_available():
        with pytest.raises(DebiasError, match="no CUDA GPU torch can use"):
            pick_device("cuda")
