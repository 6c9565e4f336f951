"""Mixing across inferred groups: partners come from the same class and the other group."""
import numpy as np
import pytest
import torch

from audit.errors import DebiasError
from audit.mixing import GroupMixer
from audit.training import TrainConfig


def test_partners_share_the_class_and_cross_the_group():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    groups = np.array([0, 0, 0, 1, 0, 0, 1, 1])
    mixer = GroupMixer(labels, groups, probability=1.0)
    idx = np.arange(8)
    rows, partners = mixer.partners(idx, np.random.default_rng(0))
    assert list(rows) == list(range(8))
    assert (labels[partners] == labels[idx[rows]]).all()
    assert (groups[partners] != groups[idx[rows]]).all()


def test_a_class_with_one_group_is_not_mixed():
    mixer = GroupMixer(np.array([1, 1, 0, 0]), np.array([0, 0, 0, 1]), probability=1.0)
    rows, partners = mixer.partners(np.arange(4), np.random.default_rng(0))
    assert list(rows) == [2, 3] and sorted(partners) == [2, 3]


def test_mix_is_a_convex_combination_of_the_pair():
    mixer = GroupMixer(np.array([1, 1]), np.array([0, 1]), probability=1.0)
    x = torch.zeros(2, 3, 4, 4)
    partner = torch.ones(1, 3, 4, 4)
    mixed = mixer.mix(x, np.array([0]), partner, np.random.default_rng(0))
    lam = 1 - mixed[0, 0, 0, 0].item()
    assert 0 < lam < 1 and torch.allclose(mixed[0], torch.full((3, 4, 4), 1 - lam))
    assert torch.equal(mixed[1], x[1]) and torch.equal(x, torch.zeros(2, 3, 4, 4))  # the input is untouched


@pytest.mark.parametrize("bad, message", [
    (dict(mix_groups=0.5), "set error_upweight > 0 too"),
    (dict(mix_groups=1.5, error_upweight=5), "mix_groups must be a share from 0 to 1"),
])
def test_bad_mix_options(bad, message):
    with pytest.raises(DebiasError, match=message):
        TrainConfig(epochs=3, **bad)
