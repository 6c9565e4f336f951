import numpy as np
import pandas as pd
import pytest

from audit.errors import DebiasError
from audit.evaluation import format_comparison, format_table, group_metrics


@pytest.fixture
def case():
    labels = np.array([1, 1, 1, 1, 0, 0])
    predicted = np.array([1, 1, 0, 0, 0, 1])
    attributes = pd.DataFrame({"tone": ["light", "light", "dark", "dark", "n/a", "n/a"]})
    return labels, predicted, attributes


def test_group_metrics_hand_computed(case):
    m = group_metrics(*case, group_by=["tone"])
    assert m["overall"]["accuracy"] == pytest.approx(3 / 6)
    groups = {(g["group"]["label"], g["group"]["tone"]): (g["n"], g["accuracy"]) for g in m["groups"]}
    assert groups == {(0, "n/a"): (2, 0.5), (1, "dark"): (2, 0.0), (1, "light"): (2, 1.0)}
    assert m["worst_group"] == {"label": 1, "tone": "dark"}
    assert m["worst_group_accuracy"] == 0.0 and m["accuracy_gap"] == 1.0
    assert m["accuracy_variance"] == pytest.approx(np.var([0.5, 0.0, 1.0]))


def test_without_group_by_groups_are_labels(case):
    m = group_metrics(*case, group_by=[])
    assert [g["group"] for g in m["groups"]] == [{"label": 0}, {"label": 1}]


def test_unknown_attribute_lists_the_known_ones(case):
    with pytest.raises(DebiasError, match="unknown attribute.*skin.*the dataset has: tone"):
        group_metrics(*case, group_by=["skin"])


def test_tables_show_every_group_and_summary(case):
    m = group_metrics(*case, group_by=["tone"])
    table = format_table(m)
    assert "dark" in table and "worst group 0.000" in table
    better = group_metrics(case[0], case[0], case[2], ["tone"])
    side = format_comparison({"standard": m, "dbvae": better})
    header = side.splitlines()[0]
    assert "standard" in header and "dbvae" in header
    assert any(line.startswith("worst group") and line.rstrip().endswith("1.000") for line in side.splitlines())
