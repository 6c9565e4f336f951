"""Features as subgroup directions: direction, rare range, naming, traversal change and its warning."""
import numpy as np
import pandas as pd
import pytest
import torch

from audit.features import (TRAVERSAL_MIN_CHANGE, subgroup_directions, traversal_change, traversal_note,
                            traversal_values)
from audit.models import DBVAE, ModelConfig
from audit.pipeline import traversal
from audit.subgroups import summarise_subgroups


@pytest.fixture
def clusters(rng):
    """Positives: 180 around 0 and a subgroup of 20 at +5 on latent 3; negatives: one blob of 200."""
    mu = rng.normal(size=(400, 8))
    labels = np.repeat([1, 0], 200)
    ids = np.where(labels == 1, 0, 2)
    minority = np.arange(20)
    mu[minority, 3] += 5.0
    ids[minority] = 1
    attributes = pd.DataFrame({"tone": np.where(np.isin(np.arange(400), minority), "dark", "light"),
                               "noise": rng.choice(["a", "b"], 400)})
    subgroups = summarise_subgroups(ids, labels, np.full(400, 1 / 400), np.zeros(400), attributes)
    return mu, labels, ids, subgroups, attributes


def test_direction_points_at_the_subgroup_and_its_rare_range_is_a_minority(clusters):
    mu, labels, ids, subgroups, attributes = clusters
    [f] = subgroup_directions(mu, labels, ids, subgroups, attributes)
    # Only the positives' minority: the majority subgroup is the class, the negatives have one subgroup.
    assert (f["class"], f["subgroup"], f["rank"], f["feature"]) == ("positive", 1, 1, 0)
    direction = np.asarray(f["direction_vector"])
    assert f["dimension"] == 3 and direction[3] > 0.95
    # Hand check: the rare range starts halfway between the two medians of the projections.
    projection = (mu - mu[2:200][ids[2:200] == 0].mean(0)) @ direction
    sub, rest = projection[:20], projection[20:200]
    assert f["rare_range"][0] == pytest.approx((np.median(sub) + np.median(rest)) / 2)
    assert f["rare_range"][1] == pytest.approx(sub.max())
    in_range = (projection[:200] >= f["rare_range"][0]) & (projection[:200] <= f["rare_range"][1])
    assert f["share_in_rare_range"] == pytest.approx(in_range.mean()) and f["share_in_rare_range"] < 0.15
    assert f["subgroup_share_in_rare_range"] == 1.0
    assert f["score"] > 3          # Cohen's d of a 5 sd shift
    assert (f["attribute"], f["attribute_value"], f["name"]) == ("tone", "dark", "tone=dark")
    assert f["eta_squared"] > 0.5
    assert sum(f["histogram"]["counts"]["positive"]) == 200


def test_without_attributes_a_feature_is_named_by_its_subgroup(clusters):
    mu, labels, ids, subgroups, _ = clusters
    [f] = subgroup_directions(mu, labels, ids, subgroups, None)
    assert f["name"] == "subgroup 1" and f["attribute"] is None and f["eta_squared"] is None


def test_top_features_caps_each_class(rng):
    mu = rng.normal(size=(300, 4))
    labels = np.ones(300, dtype=int)
    ids = np.where(np.arange(300) < 240, 0, np.where(np.arange(300) < 270, 1, 2))
    mu[ids == 1, 0] += 4
    mu[ids == 2, 1] += 4
    subgroups = summarise_subgroups(ids, labels, np.full(300, 1 / 300), np.zeros(300))
    assert len(subgroup_directions(mu, labels, ids, subgroups, top_features=2)) == 2
    assert len(subgroup_directions(mu, labels, ids, subgroups, top_features=1)) == 1


def test_traversal_change_measures_the_strip():
    flat = np.full((9, 8, 8, 3), 0.4)
    assert traversal_change(flat) == 0.0 and traversal_note(0.0) is not None
    ramp = np.linspace(0, 1, 9)[:, None, None, None] * np.ones((9, 8, 8, 3))
    assert traversal_change(ramp) == pytest.approx(1.0) and traversal_note(1.0) is None
    assert traversal_change((ramp * 255).astype(np.uint8)) == pytest.approx(1.0)
    dark = np.zeros((9, 8, 8, 3), dtype=np.uint8)
    dark[-1] = 1                                   # bytes: 1/255 per pixel, whatever the maximum
    assert traversal_change(dark) == pytest.approx(1 / 255)
    assert "train more epochs" in traversal_note(TRAVERSAL_MIN_CHANGE / 2)


class _Decoder(torch.nn.Module):
    """A stand-in decoder: grey images whose brightness follows latent 3, or a constant one that ignores z."""

    def __init__(self, uses_z: bool):
        super().__init__()
        self.uses_z = uses_z

    def forward(self, z):
        level = torch.sigmoid(z[:, 3]) if self.uses_z else torch.full((len(z),), 0.5)
        return level.view(-1, 1, 1, 1).expand(-1, 3, 16, 16)


def test_a_decoder_that_ignores_z_gives_no_change_and_a_note(clusters):
    mu, labels, ids, subgroups, attributes = clusters
    [f] = subgroup_directions(mu, labels, ids, subgroups, attributes)
    model = DBVAE(ModelConfig(image_size=16, latent_dim=8, n_filters=2, dense_units=8)).eval()
    model.decoder = _Decoder(uses_z=False)
    images, values = traversal(model, mu.astype(np.float32), labels, ids, f, torch.device("cpu"))
    assert images.shape == (9, 16, 16, 3) and len(values) == 9
    np.testing.assert_allclose(values, traversal_values(f))
    assert traversal_change(images) == 0.0 and traversal_note(traversal_change(images)) is not None
    model.decoder = _Decoder(uses_z=True)          # the strip now sweeps latent 3 from the rest to the subgroup
    images, _ = traversal(model, mu.astype(np.float32), labels, ids, f, torch.device("cpu"))
    assert traversal_change(images) > 0.5 and traversal_note(traversal_change(images)) is None
