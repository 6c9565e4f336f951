"""The gated error schedule: the error set's coherence in the latent space decides how it is upweighted."""
import json

import numpy as np
import pytest

import audit.coherence as coherence
import audit.training as training
from audit.coherence import COHERENT_SHARE, balanced_threshold, coherent_error_set, error_set_coherence, gated_schedule
from audit.errors import DebiasError
from audit.models import ModelConfig
from audit.pipeline import train_model
from audit.training import TrainConfig

SMALL = dict(image_size=16, latent_dim=8, n_filters=4, dense_units=32)


def _latents(rng, flagged_together: bool):
    """200 samples a class in 2-d; 20 of each class flagged, either one tight far cluster or scattered."""
    mu = rng.normal(size=(400, 2))
    labels = np.repeat([1, 0], 200)
    errors = np.zeros(400)
    for start in (0, 200):
        errors[start:start + 20] = 1.0
        if flagged_together:
            mu[start:start + 20] = rng.normal(loc=8.0, scale=0.1, size=(20, 2))
    return mu, labels, errors


def test_a_tight_error_set_is_coherent_and_a_scattered_one_is_not(rng):
    together = error_set_coherence(*_latents(rng, True))
    # Each flagged sample's 10 nearest others are the other 19 of its cluster.
    assert together["positive"] == together["negative"] == together["pooled"] == 1.0
    assert together["error_set"] == {"positive": 20, "negative": 20}
    assert gated_schedule(together) == "geometric"
    scattered = error_set_coherence(*_latents(rng, False))
    # Scattered among 200: about the base rate (19 of 199 others) in each class.
    assert scattered["pooled"] == pytest.approx(19 / 199, abs=0.06)
    assert gated_schedule(scattered) == "constant"


def test_neighbour_shares_by_hand():
    # Positives on a line at 0, 1, 2, 10, 11: flagged 0 and 1. With 2 neighbours: 0's are 1 (flagged) and 2,
    # 1's are 0 (flagged) and 2: share 1/2 each. Negatives have no error set.
    mu = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [0.0], [5.0], [9.0]])
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    errors = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    out = error_set_coherence(mu, labels, errors, neighbours=2)
    assert out == {"error_set": {"negative": 0, "positive": 2}, "negative": None, "positive": 0.5, "pooled": 0.5}
    assert gated_schedule(out) == ("geometric" if 0.5 >= COHERENT_SHARE else "constant")
    assert gated_schedule(error_set_coherence(mu, labels, np.zeros(8))) == "constant"   # no error set at all
    # A second error set over the same latent means reuses the class's neighbour index, with the same result.
    indexes: dict = {}
    assert error_set_coherence(mu, labels, errors, neighbours=2, indexes=indexes) == out and set(indexes) == {1}
    fitted = indexes[1]
    other = np.array([0, 0, 0, 1, 1, 0, 0, 0], dtype=float)
    assert (error_set_coherence(mu, labels, other, neighbours=2, indexes=indexes)
            == error_set_coherence(mu, labels, other, neighbours=2)) and indexes[1] is fitted


def test_a_large_error_set_is_judged_from_a_sample_of_its_members(rng):
    # Positives: 300 flagged, half in a tight cluster (share 1) and half scattered (share ~0); negatives: 20
    # flagged in a cluster. Capped at 100 queries a class, the positives' share stays near the whole set's,
    # and the pooled share still weighs each class by its whole error set (300 vs 20), not by the 100 asked.
    mu = rng.normal(size=(2400, 2)) * 10
    labels = np.repeat([1, 0], 1200)
    errors = np.zeros(2400)
    errors[:300] = 1.0
    mu[:150] = rng.normal(loc=80.0, scale=0.1, size=(150, 2))
    errors[1200:1220] = 1.0
    mu[1200:1220] = rng.normal(loc=-80.0, scale=0.1, size=(20, 2))
    whole = error_set_coherence(mu, labels, errors)
    capped = error_set_coherence(mu, labels, errors, max_queries=100)
    assert capped["error_set"] == whole["error_set"] == {"positive": 300, "negative": 20}
    assert capped["negative"] == whole["negative"] == 1.0
    assert capped["positive"] == pytest.approx(whole["positive"], abs=0.12)
    assert capped["pooled"] == pytest.approx((300 * capped["positive"] + 20 * 1.0) / 320)


def test_the_balanced_threshold_equalises_the_error_rates_by_hand():
    # At 0: negatives 2 and 3 are errors (2 of 6), positive -1 (1 of 6). At 1: negatives 2 and 3 (2 of 6),
    # positives -1 and 1 (2 of 6); from 2 up the positives' rate is 3 of 6 or more and the negatives' 1 or 0.
    logits = np.array([-4, -3, -2, -1, 2, 3, 1, 2, 3, 4, 5, -1], dtype=float)
    labels = np.repeat([0, 1], 6)
    assert balanced_threshold(logits, labels) == 1.0
    assert balanced_threshold(np.array([-2.0, 2.0]), np.array([0, 1])) == 0.0   # already equal (none): 0
    assert balanced_threshold(np.array([-2.0, 2.0]), np.array([0, 0])) == 0.0   # one class only


def _two_minorities(rng, shift: float):
    """200 a class in 2-d; a tight minority of 20 in each class whose logits are on the other side, plus 10
    scattered hard positives near 0; every logit moved by `shift` (a lagging bias)."""
    mu = rng.normal(size=(400, 2)) * 3
    labels = np.repeat([0, 1], 200)
    logits = np.where(labels == 1, 5.0, -5.0)
    minority = np.zeros(400, dtype=bool)
    minority[:20] = minority[200:220] = True
    mu[:20] = rng.normal(loc=20.0, scale=0.1, size=(20, 2))
    mu[200:220] = rng.normal(loc=-20.0, scale=0.1, size=(20, 2))
    logits[:20], logits[200:220], logits[220:230] = 1.0, -1.0, 0.5
    return mu, logits + shift, labels, minority


def test_the_more_coherent_threshold_puts_a_split_minority_back_together(rng):
    mu, logits, labels, minority = _two_minorities(rng, shift=-1.5)
    # At 0 the negatives' minority (at -0.5) is missed and 10 scattered positives (at -1.0) are errors.
    at_zero = coherence.errors_at(logits, labels) > 0.5
    assert not at_zero[:20].any() and at_zero[220:230].all()
    errors, decision = coherent_error_set(mu, logits, labels, np.ones(400, dtype=bool))
    assert decision["threshold"] == -2.5
    assert np.array_equal(errors > 0.5, minority)
    assert decision["coherence"]["pooled"] == 1.0 > decision["coherence_by_threshold"]["0"]
    assert decision["schedule"] == "geometric"


def test_an_error_set_in_one_class_only_keeps_threshold_0(rng):
    # Only the positives hold a minority: balancing the rates would flag the 20 highest negatives, scattered.
    mu = rng.normal(size=(400, 2)) * 3
    labels = np.repeat([0, 1], 200)
    logits = np.concatenate([np.linspace(-9.0, -1.0, 200), np.full(20, -2.0), np.linspace(1.0, 9.0, 180)])
    mu[200:220] = rng.normal(loc=-20.0, scale=0.1, size=(20, 2))
    assert balanced_threshold(logits, labels) < -1.0
    errors, decision = coherent_error_set(mu, logits, labels, np.ones(400, dtype=bool))
    assert decision["threshold"] == 0.0 and len(decision["coherence_by_threshold"]) == 2
    assert np.array_equal(np.flatnonzero(errors), np.arange(200, 220))


def test_a_gated_run_records_its_decision_and_upweights_by_it(tiny_dataset, tmp_path, monkeypatch):
    flagged = (np.arange(len(tiny_dataset)) % 2).astype(np.float64)
    monkeypatch.setattr(coherence, "errors_at", lambda logits, labels, threshold=0.0: flagged.copy())
    calls = []
    real = coherence.error_set_coherence

    def spy(mu, labels, errors, **options):
        calls.append((mu.shape, len(labels)))
        return real(mu, labels, errors, **options)
    monkeypatch.setattr(coherence, "error_set_coherence", spy)
    for decision, multipliers in (("geometric", [21.0, 21.0 ** 2, 21.0 ** 3]), ("constant", [21.0] * 3)):
        monkeypatch.setattr(coherence, "gated_schedule", lambda coherence, d=decision: d)
        out = tmp_path / decision
        calls.clear()
        result = train_model(tiny_dataset, out, ModelConfig(method="dbvae", **SMALL),
                             TrainConfig(epochs=4, batch_size=8, error_upweight=20.0, error_schedule="gated"),
                             progress=False)
        assert [r["error_upweight"] + 1 for r in result.history[1:]] == pytest.approx(multipliers)
        assert {r["error_schedule"] for r in result.history[1:]} == {decision}
        recorded = json.loads((out / training.SCHEDULE_FILE).read_text())
        assert recorded["schedule"] == decision and set(recorded["coherence"]) >= {"pooled", "positive"}
        assert np.array_equal(np.load(out / training.ERROR_SET_FILE), flagged)
        # Decided once per run, on the training samples' latent means (the held-out tenth left out): one
        # coherence per threshold tried (0, and the balanced one when it differs).
        trained = len(tiny_dataset) - 2 * int(0.1 * 24)
        assert calls == [((trained, 8), trained)] * len(recorded["coherence_by_threshold"])
        assert recorded["threshold"] == 0.0 or len(calls) == 2


def test_a_resumed_gated_run_keeps_the_recorded_decision(tiny_dataset, tmp_path, monkeypatch):
    cfg = dict(batch_size=8, error_upweight=20.0, error_schedule="gated")
    model = ModelConfig(method="dbvae", **SMALL)
    train_model(tiny_dataset, tmp_path / "m", model, TrainConfig(epochs=2, **cfg), progress=False)
    decision = json.loads((tmp_path / "m" / training.SCHEDULE_FILE).read_text())
    # Whatever the gate would say now, the resumed run goes on as it decided.
    other = "constant" if decision["schedule"] == "geometric" else "geometric"
    monkeypatch.setattr(coherence, "gated_schedule", lambda coherence: other)
    resumed = train_model(tiny_dataset, tmp_path / "m", model, TrainConfig(epochs=3, **cfg), resume=True,
                          progress=False)
    assert resumed.history[-1]["error_schedule"] == decision["schedule"]


def test_the_gate_needs_a_latent_space(tiny_dataset, tmp_path):
    with pytest.raises(DebiasError, match="gated error schedule decides from the DB-VAE's latent space"):
        train_model(tiny_dataset, tmp_path / "m", ModelConfig(method="standard", **SMALL),
                    TrainConfig(epochs=2, batch_size=8, error_upweight=20.0, error_schedule="gated"), progress=False)
