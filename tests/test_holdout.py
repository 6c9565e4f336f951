import numpy as np
import pytest
import torch

from audit.errors import DebiasError
from audit.holdout import validation_split
from audit.inference import predict
from audit.models import ModelConfig, build_model
from audit.pipeline import train_model
from audit.training import TrainConfig

SMALL = dict(image_size=16, latent_dim=8, n_filters=4, dense_units=32)


def test_validation_split_is_stratified_and_seeded():
    labels = np.array([1] * 37 + [0] * 63)
    held_out = validation_split(labels, 0.1, seed=3)
    assert held_out[labels == 1].sum() == 3 and held_out[labels == 0].sum() == 6  # floor(0.1 * n) per class
    assert np.array_equal(held_out, validation_split(labels, 0.1, seed=3))
    assert not np.array_equal(held_out, validation_split(labels, 0.1, seed=4))
    assert not validation_split(labels, 0.0, seed=3).any()
    # At the largest share, a class of one keeps its sample for training.
    assert not validation_split(np.array([1, 0, 0]), 0.5, seed=0)[0]


@pytest.mark.parametrize("bad", [-0.1, 0.6, float("nan")])
def test_val_fraction_is_a_share_up_to_half(bad):
    with pytest.raises(DebiasError, match="val_fraction"):
        TrainConfig(val_fraction=bad)


@pytest.mark.parametrize("method", ["standard", "dbvae"])
def test_held_out_samples_are_measured_never_trained_on(tiny_dataset, tmp_path, monkeypatch, method):
    drawn = []
    import audit.training as training
    real = training.epoch_batches

    def spy(*args, **kwargs):
        batches = real(*args, **kwargs)
        drawn.append(batches)
        return batches

    monkeypatch.setattr(training, "epoch_batches", spy)
    result = train_model(tiny_dataset, tmp_path / "m", ModelConfig(method=method, **SMALL),
                         TrainConfig(epochs=3, batch_size=8, val_fraction=0.25, error_upweight=5.0, error_steps=0),
                         progress=False)
    held_out = validation_split(tiny_dataset.labels, 0.25, 0)
    assert held_out.sum() == 12
    assert not np.isin(np.concatenate([b.ravel() for b in drawn]), np.flatnonzero(held_out)).any()
    for record in result.history:
        assert 0 <= record["val_accuracy"] <= 1 and record["val_bce"] >= 0
        assert record["val_worst_class_accuracy"] <= record["val_accuracy"]
    # The error set (taken after epoch 1) covers the held-out samples too: the audit scores every sample.
    errors = np.load(tmp_path / "m" / "error_set.npy")
    assert errors.shape == (len(tiny_dataset),)
    if errors[held_out].any():
        for r in result.history[1:]:
            assert r["val_worst_inferred_group_accuracy"] <= min(r["val_error_set_accuracy"],
                                                                  r["val_worst_class_accuracy"])


def test_no_validation_split_records_no_val_figures(tiny_dataset, tmp_path):
    result = train_model(tiny_dataset, tmp_path / "m", ModelConfig(**SMALL),
                         TrainConfig(epochs=1, batch_size=8, val_fraction=0.0), progress=False)
    assert not any(k.startswith("val_") for k in result.history[0])


def test_predict_on_indices_matches_predict_on_the_selection(tiny_dataset):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL))
    idx = np.array([40, 3, 17, 3, 0])
    some = predict(model, tiny_dataset.images, torch.device("cpu"), batch_size=2, indices=idx)
    whole = predict(model, tiny_dataset.images[idx], torch.device("cpu"), batch_size=2)
    assert some.keys() == whole.keys()
    for k in some:
        np.testing.assert_allclose(some[k], whole[k], rtol=1e-5, atol=1e-6)


def test_auto_schedule_keeps_the_run_the_held_out_data_prefers(tiny_dataset, tmp_path, monkeypatch):
    import json

    import audit.schedule_choice as choice
    from audit.checkpoint import load_model
    from audit.training import train
    # Both runs share the epochs up to the error set: the geometric one starts from the constant one's.
    cfg = TrainConfig(epochs=3, batch_size=8, val_fraction=0.25, error_upweight=5.0, error_steps=0, seed=1)
    result = train_model(tiny_dataset, tmp_path / "m", ModelConfig(**SMALL), cfg, progress=False,
                         choose_schedule=True)
    saved = json.loads((tmp_path / "m" / choice.CHOICE_FILE).read_text())
    scores = saved["scores"]
    best = max(v for v in scores.values() if v is not None) if any(v is not None for v in scores.values()) else None
    assert saved["chosen"] in ("constant", "geometric") and saved["criterion"] == choice.CRITERION
    if best is not None:
        assert scores[saved["chosen"]] == best
        assert scores["constant"] < best or saved["chosen"] == "constant"  # ties keep the default
    # The model directory is the chosen run's; the geometric run equals one trained from scratch.
    root = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert root["error_schedule"] == saved["chosen"] and result.history[-1]["epoch"] == 3
    geometric = json.loads((tmp_path / "m" / "schedules" / "geometric" / "history.json").read_text())
    alone = train(tiny_dataset, ModelConfig(**SMALL), TrainConfig(**{**cfg.__dict__, "error_schedule": "geometric"}),
                  tmp_path / "alone", progress=False)
    assert [round(h["loss"], 5) for h in geometric] == [round(h["loss"], 5) for h in alone.history]
    a, b = load_model(tmp_path / "m" / "schedules" / "geometric")[0], alone.model
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k])


@pytest.mark.parametrize("over, match", [({"error_upweight": 0.0}, "error_upweight > 0"),
                                         ({"val_fraction": 0.0}, "val_fraction > 0")])
def test_auto_schedule_needs_an_error_set_and_held_out_samples(tiny_dataset, tmp_path, over, match):
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 8, "error_upweight": 5.0, **over})
    with pytest.raises(DebiasError, match=match):
        train_model(tiny_dataset, tmp_path / "m", ModelConfig(**SMALL), cfg, progress=False, choose_schedule=True)
    assert not (tmp_path / "m").exists()
