import json
import warnings

import numpy as np
import pytest
import torch

import audit.training as training
from audit import __version__
from audit.checkpoint import checkpoint_path, load_model
from audit.errors import DebiasError, ModelError
from audit.holdout import VAL_FRACTION, validation_split
from audit.models import ModelConfig
from audit.pipeline import train_model
from audit.training import TrainConfig, epoch_batches

SIZE = 16  # as in conftest.tiny_dataset

SMALL = dict(image_size=SIZE, latent_dim=8, n_filters=4, dense_units=32)


def _train(ds, out, method="dbvae", epochs=2, seed=0, resume=False, **train_kwargs):
    return train_model(ds, out, ModelConfig(method=method, **SMALL),
                       TrainConfig(epochs=epochs, batch_size=8, seed=seed, **train_kwargs),
                       resume=resume, progress=False)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_epoch_batches_are_class_balanced(rng):
    labels = np.array([1] * 5 + [0] * 20)
    for prob in (None, np.full(25, 1 / 25)):
        batches = epoch_batches(labels, prob, batch_size=8, steps=6, rng=rng)
        assert batches.shape == (6, 8)
        assert (labels[batches].sum(1) == 4).all()


def test_epoch_batches_follow_the_probability(rng):
    labels = np.array([1, 1, 0, 0])
    prob = np.array([0.45, 0.05, 0.25, 0.25])
    drawn = epoch_batches(labels, prob, batch_size=2, steps=4000, rng=rng)[:, :].ravel()
    share_of_0_among_positives = (drawn == 0).sum() / np.isin(drawn, [0, 1]).sum()
    assert share_of_0_among_positives == pytest.approx(0.9, abs=0.02)


def test_same_seed_same_model(tiny_dataset, tmp_path):
    a = _train(tiny_dataset, tmp_path / "a")
    b = _train(tiny_dataset, tmp_path / "b")
    _assert_same_weights(_weights(a.model), _weights(b.model))
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = _train(tiny_dataset, tmp_path / "c", seed=1)
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_resume_equals_uninterrupted(tiny_dataset, tmp_path):
    straight = _train(tiny_dataset, tmp_path / "straight", epochs=2)
    _train(tiny_dataset, tmp_path / "resumed", epochs=1)
    resumed = _train(tiny_dataset, tmp_path / "resumed", epochs=2, resume=True)
    _assert_same_weights(_weights(straight.model), _weights(resumed.model))
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history])


def test_model_dir_holds_weights_config_version_history_checkpoints(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path / "m", epochs=2, density="histogram-product")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["version"] == __version__ and config["epochs_completed"] == 2
    assert config["model"]["latent_dim"] == 8 and config["training"]["density"] == "histogram-product"
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert len(history) == 2
    for key in ("loss", "bce", "recon", "kl", "accuracy", "samples_per_second", "max_sampling_weight_ratio"):
        assert np.isfinite(history[0][key]), key
    assert checkpoint_path(tmp_path / "m", 1).is_file() and checkpoint_path(tmp_path / "m", 2).is_file()
    model, _ = load_model(tmp_path / "m")
    _assert_same_weights(_weights(model), _weights(result.model.cpu()))
    assert result.sampling_probability.sum() == pytest.approx(1.0)


def test_standard_history_has_no_vae_parts(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path / "s", method="standard", epochs=1)
    assert "recon" not in result.history[0] and "bce" in result.history[0]
    assert result.sampling_probability is None


def test_version_mismatch_warns(tiny_dataset, tmp_path):
    _train(tiny_dataset, tmp_path / "m", epochs=1)
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    state["version"] = "0.0.1"
    torch.save(state, tmp_path / "m" / "model.pt")
    with pytest.warns(UserWarning, match="written by debias 0.0.1"):
        load_model(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train(tiny_dataset, tmp_path / "fresh", epochs=1)
        load_model(tmp_path / "fresh")


def test_refuses_to_overwrite_and_checks_resume(tiny_dataset, tmp_path):
    _train(tiny_dataset, tmp_path / "m", epochs=1)
    with pytest.raises(DebiasError, match="already exists and is not empty"):
        _train(tiny_dataset, tmp_path / "m", epochs=1)
    with pytest.raises(ModelError, match="trained with"):
        train_model(tiny_dataset, tmp_path / "m", ModelConfig(**{**SMALL, "latent_dim": 9}),
                    TrainConfig(epochs=2, batch_size=8), resume=True, progress=False)
    with pytest.raises(ModelError, match="holds no checkpoint"):
        _train(tiny_dataset, tmp_path / "empty", resume=True)


def test_image_size_must_match(tiny_dataset, tmp_path):
    with pytest.raises(ModelError, match="--image-size 32"):
        train_model(tiny_dataset, tmp_path / "m", ModelConfig(image_size=32), TrainConfig(epochs=1),
                    progress=False)
    assert not (tmp_path / "m").exists()


def test_callback_sees_every_step_and_can_stop(tiny_dataset, tmp_path):
    seen = []

    def callback(epoch, step, steps, metrics):
        seen.append((epoch, step, steps))
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_dataset, tmp_path / "m", ModelConfig(**SMALL), TrainConfig(epochs=3, batch_size=8),
                    progress=False, callback=callback)
    steps = seen[0][2]
    assert seen[:steps] == [(1, s, steps) for s in range(1, steps + 1)]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["epochs_completed"] == 1


@pytest.mark.parametrize("bad, message", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(batch_size=1), "batch_size must be >= 2"),
    (dict(lr=0), r"learning rate must be a number in \(0, 1\], got 0"),
    (dict(lr=float("nan")), r"learning rate must be a number in \(0, 1\], got nan"),
    (dict(lr=float("inf")), "learning rate must be a number"),
    (dict(seed=-1), r"seed must be a whole number from 0 to 4294967295, got -1"),
    (dict(seed=2**64), "seed must be a whole number"),
    (dict(seed=1.5), "seed must be a whole number"),
    (dict(density="parzen"), "unknown density estimator 'parzen'"),
    (dict(reweight="negative"), "unknown reweight 'negative'"),
])
def test_bad_train_config(bad, message):
    with pytest.raises(DebiasError, match=message):
        TrainConfig(**bad)


@pytest.mark.parametrize("kl_weight", [float("nan"), float("inf"), -1.0, 1e308])
def test_bad_kl_weight(kl_weight):
    with pytest.raises(DebiasError, match="kl_weight must be a number from 0 to 100"):
        ModelConfig(**{**SMALL, "kl_weight": kl_weight})


def test_a_diverged_run_stops_before_it_checkpoints(tiny_dataset, tmp_path, monkeypatch):
    """A loss that becomes NaN fails the run with a message naming the options to lower; no epoch is saved."""
    import audit.steps as steps
    real_loss = steps.dbvae_loss

    def poisoned(*args, **kwargs):
        parts = real_loss(*args, **kwargs)
        return {**parts, "loss": parts["loss"] * float("nan")}

    monkeypatch.setattr(steps, "dbvae_loss", poisoned)
    with pytest.raises(DebiasError, match=r"training diverged in epoch 1: .*loss=nan.*; lower lr \(now 0.0005\) "
                                          r"or kl_weight"):
        train_model(tiny_dataset, tmp_path / "m", ModelConfig(**SMALL), TrainConfig(epochs=2, batch_size=8),
                    progress=False)
    assert not checkpoint_path(tmp_path / "m", 1).exists()


@pytest.mark.parametrize("method", ["standard", "dbvae"])
def test_error_set_is_taken_once_and_upweights_sampling(tiny_dataset, tmp_path, method):
    result = _train(tiny_dataset, tmp_path / "m", method=method, epochs=3, error_upweight=20.0, error_epoch=1)
    errors = np.load(tmp_path / "m" / "error_set.npy")
    assert errors.shape == (len(tiny_dataset),) and set(np.unique(errors)) <= {0.0, 1.0}
    assert "error_set" not in result.history[0]
    for record in result.history[1:]:  # the same set, taken after epoch 1, used in epochs 2 and 3
        assert sum(record["error_set"].values()) == int(errors.sum())
    prob = result.sampling_probability
    labels = tiny_dataset.labels
    trained = ~validation_split(labels, VAL_FRACTION, 0)  # held-out samples are never drawn
    assert (prob[~trained] == 0).all()
    for cls in (0, 1):
        assert prob[labels == cls].sum() == pytest.approx(0.5)
        wrong, right = (labels == cls) & (errors == 1) & trained, (labels == cls) & (errors == 0) & trained
        if wrong.any() and right.any() and method == "standard":
            assert prob[wrong].mean() == pytest.approx(21 * prob[right].mean())


@pytest.mark.parametrize("method, over", [("standard", {}), ("dbvae", {"strength": 0.0})])
@pytest.mark.parametrize("schedule, multipliers", [("constant", [21, 21, 21]), ("geometric", [21, 441, 9261])])
def test_error_upweight_follows_its_schedule(tiny_dataset, tmp_path, monkeypatch, method, over, schedule,
                                            multipliers):
    # Every other sample of each class in the error set, taken after epoch 1 (6 steps an epoch, fewer than
    # error_steps); uniform base sampling (strength 0 for the DB-VAE). Constant: 1 + upweight in every later
    # epoch, never compounded from the epoch before; geometric: (1 + upweight) ** k in the k-th.
    pattern = (np.arange(len(tiny_dataset)) % 2).astype(np.float64)
    monkeypatch.setattr(training, "_error_set", lambda *args: pattern.copy())
    result = _train(tiny_dataset, tmp_path / "m", method=method, epochs=4, error_upweight=20.0,
                    error_schedule=schedule, **over)
    assert [r["error_upweight"] + 1 for r in result.history[1:]] == pytest.approx(multipliers)
    prob, labels = result.sampling_probability, tiny_dataset.labels
    trained = ~validation_split(labels, VAL_FRACTION, 0)
    for cls in (0, 1):
        wrong, right = (labels == cls) & (pattern == 1) & trained, (labels == cls) & (pattern == 0) & trained
        assert prob[wrong].mean() == pytest.approx(multipliers[-1] * prob[right].mean())


def test_geometric_schedule_counts_a_split_epoch_and_stays_finite():
    cfg = TrainConfig(epochs=200, error_upweight=50.0, error_steps=150, error_schedule="geometric")
    assert training.scheduled_upweight(cfg, 1, 625) == 50.0          # the rest of the split epoch 1
    assert training.scheduled_upweight(cfg, 2, 625) == 51.0 ** 2 - 1
    assert training.scheduled_upweight(cfg, 2, 100) == 50.0          # no split: epoch 2 is the first
    assert training.scheduled_upweight(cfg, 200, 625) == training.MAX_SCHEDULED_UPWEIGHT
    with pytest.raises(DebiasError, match="unknown error schedule 'linear'; choose one of constant, geometric, gated"):
        TrainConfig(error_schedule="linear")


@pytest.mark.parametrize("method", ["standard", "dbvae"])
def test_error_steps_take_the_error_set_inside_the_epoch(tiny_dataset, tmp_path, method):
    # 48 samples in batches of 8: 6 steps an epoch; the set is taken after 2 steps of epoch 1.
    calls = []
    result = train_model(tiny_dataset, tmp_path / "m", ModelConfig(method=method, **SMALL),
                         TrainConfig(epochs=2, batch_size=8, error_upweight=20.0, error_steps=2), progress=False,
                         callback=lambda epoch, step, steps, _: calls.append((epoch, step, steps)))
    # Progress counts through the whole epoch across the split: steps 1..6 of 6, never back to 1.
    assert calls == [(e, s, 6) for e in (1, 2) for s in range(1, 7)]
    errors = np.load(tmp_path / "m" / "error_set.npy")
    first, second = result.history
    assert first["batches"] == second["batches"] == 6
    assert sum(first["error_set"].values()) == sum(second["error_set"].values()) == int(errors.sum())
    assert np.isfinite(first["loss"]) and first["seconds"] > 0 and first["samples_per_second"] > 0
    # At or past an epoch's length the set is taken at the end of the epoch, as without error_steps.
    late = _train(tiny_dataset, tmp_path / "late", method=method, epochs=2, error_upweight=20.0, error_steps=6)
    assert "error_set" not in late.history[0] and "error_set" in late.history[1]


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_error_steps_must_be_a_whole_number(bad):
    with pytest.raises(DebiasError, match="error_steps must be a whole number >= 0"):
        TrainConfig(epochs=2, error_upweight=20.0, error_steps=bad)


def test_resume_keeps_the_error_set(tiny_dataset, tmp_path):
    # A constant rate: the stop is simulated by a run of fewer epochs, and a cosine rate depends on the total.
    options = dict(error_upweight=20.0, lr_schedule="constant")
    straight = _train(tiny_dataset, tmp_path / "straight", epochs=3, **options)
    _train(tiny_dataset, tmp_path / "resumed", epochs=2, **options)
    resumed = _train(tiny_dataset, tmp_path / "resumed", epochs=3, resume=True, **options)
    _assert_same_weights(_weights(straight.model), _weights(resumed.model))


@pytest.mark.parametrize("bad, message", [
    (dict(error_upweight=-1), "error_upweight must be a number from 0 to 1000"),
    (dict(error_upweight=float("nan")), "error_upweight must be a number from 0 to 1000"),
    (dict(error_upweight=5, error_epoch=6), r"error_epoch must be from 1 to epochs - 1 = 5, got 6"),
])
def test_bad_error_options(bad, message):
    with pytest.raises(DebiasError, match=message):
        TrainConfig(epochs=6, **bad)


def test_training_with_group_mixing_runs_and_is_seeded(tiny_dataset, tmp_path):
    a = _train(tiny_dataset, tmp_path / "a", epochs=2, error_upweight=20.0, mix_groups=0.5)
    b = _train(tiny_dataset, tmp_path / "b", epochs=2, error_upweight=20.0, mix_groups=0.5)
    _assert_same_weights(_weights(a.model), _weights(b.model))


def test_error_aware_defaults_per_method():
    from audit.training import default_error_options

    const, gated = {"error_schedule": "constant"}, {"error_schedule": "gated"}
    assert default_error_options("dbvae", 6) == {"error_upweight": 50.0, "mix_groups": 0.0} | gated
    # JTT has no latent space to gate on: it keeps JTT's constant multiplier.
    assert default_error_options("standard", 6) == {"error_upweight": 0.0, "mix_groups": 0.0} | const
    assert default_error_options("dbvae", 1) == {"error_upweight": 0.0, "mix_groups": 0.0} | gated  # no epoch after
    # What the user gives wins; the lab's flags turn it off.
    assert default_error_options("dbvae", 6, error_upweight=0.0) == {"error_upweight": 0.0, "mix_groups": 0.0} | gated
    assert default_error_options("standard", 6, 20.0, 0.25, error_schedule="geometric") == {
        "error_upweight": 20.0, "mix_groups": 0.25, "error_schedule": "geometric"}


def test_the_learning_rate_decays_by_epoch_unless_constant():
    import math

    from audit.training import epoch_lr
    cosine = TrainConfig(epochs=6, lr=1e-3)
    assert cosine.lr_schedule == "cosine"
    rates = [epoch_lr(cosine, e) for e in range(1, 7)]
    assert rates[0] == pytest.approx(1e-3) and rates[3] == pytest.approx(5e-4)
    assert rates[-1] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 5 / 6)) / 2)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert {epoch_lr(TrainConfig(epochs=6, lr=1e-3, lr_schedule="constant"), e) for e in range(1, 7)} == {1e-3}
    with pytest.raises(DebiasError, match="unknown learning-rate schedule 'linear'; choose one of cosine, constant"):
        TrainConfig(lr_schedule="linear")


def test_training_steps_at_each_epochs_rate(tmp_path, tiny_dataset):
    from audit.training import epoch_lr, train
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu", val_fraction=0.0)
    result = train(tiny_dataset, ModelConfig(method="standard", image_size=16, n_filters=4, dense_units=16), cfg,
                   tmp_path / "m", progress=False)
    assert len(result.history) == 2
    state = torch.load(tmp_path / "m" / "checkpoints" / "epoch-0002.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(epoch_lr(cfg, 2)) == pytest.approx(5e-4)
