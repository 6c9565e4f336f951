"""Model sets: `debias train --seeds`, evaluate with mean +- sd across seeds, compare with seeds paired."""
import json

import numpy as np
import pandas as pd
import pytest

from audit.comparison import load_evaluation, paired_comparison
from audit.errors import DebiasError
from audit.evaluation import group_metrics, write_evaluation
from audit.modelset import MANIFEST, combine, is_model_set, members, parse_seeds
from tests.test_cli import TRAIN_SMALL, assert_bad_input, run

# 100 positives (60 light, 40 dark) and 100 negatives (all light): group sizes above min_group_size.
SIZES = {(1, "light"): 60, (1, "dark"): 40, (0, "light"): 100}


def _member(accuracy: dict, seed=0):
    """One member's evaluation with exact group accuracies (the right samples drawn at random)."""
    rng = np.random.default_rng(seed)
    labels, predicted, tone = [], [], []
    for (label, value), n in SIZES.items():
        right = rng.permutation(np.arange(n) < round(accuracy[(label, value)] * n))
        labels += [label] * n
        predicted += list(np.where(right, label, 1 - label))
        tone += [value] * n
    return group_metrics(np.array(labels), np.array(predicted), pd.DataFrame({"tone": tone}), ["tone"], n_boot=200)


# Seed 0: dark 0.8 (worst), light 0.9, negatives 0.95; seed 1: dark 0.6 (worst), light 0.9, negatives 0.85.
SEED0 = {(1, "light"): 0.9, (1, "dark"): 0.8, (0, "light"): 0.95}
SEED1 = {(1, "light"): 0.9, (1, "dark"): 0.6, (0, "light"): 0.85}


def _set(tmp_path, name, accuracies, seeds):
    path = tmp_path / f"{name}.json"
    metrics = combine([_member(acc, seed=i) for i, acc in enumerate(accuracies)], seeds, n_boot=200)
    write_evaluation(path, metrics)
    return path, metrics


def test_train_seeds_writes_members_and_manifest(capsys, tmp_path, tiny_npz):
    out = tmp_path / "set"
    code, stdout, err = run(capsys, "train", tiny_npz, "--method", "standard", "--out", out, "--seeds", "3,1",
                            *TRAIN_SMALL)
    assert code == 0, err
    assert "with 2 seeds (3, 1) -> model set" in stdout
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["seeds"] == [3, 1] and manifest["members"] == ["seed-3", "seed-1"]
    assert manifest["method"] == "standard"
    assert is_model_set(out) and [s for s, _ in members(out)] == [3, 1]
    for seed in (3, 1):
        config = json.loads((out / f"seed-{seed}" / "config.json").read_text())
        assert config["training"]["seed"] == seed and (out / f"seed-{seed}" / "model.pt").is_file()
    # Not over an existing set without --resume; with it, the finished members are left as they are.
    assert_bad_input(capsys, "train", tiny_npz, "--method", "standard", "--out", out, "--seeds", "3,1",
                     *TRAIN_SMALL, match="already exists and is not empty")
    assert_bad_input(capsys, "train", tiny_npz, "--method", "standard", "--out", out, "--seeds", "3,2", "--resume",
                     *TRAIN_SMALL, match="is a model set of seeds [3, 1], not [3, 2]")
    assert run(capsys, "train", tiny_npz, "--method", "standard", "--out", out, "--seeds", "3,1", "--resume",
               *TRAIN_SMALL)[0] == 0

    # evaluate takes the set like a model: pooled table plus mean +- sd across seeds.
    code, stdout, err = run(capsys, "evaluate", out, tiny_npz, "--group-by", "skin_tone", "--out",
                            tmp_path / "e.json", "--n-boot", "50", "--min-group-size", "5")
    assert code == 0, err
    assert "accuracy over 2 seeds (mean +- sd)" in stdout and "across 2 seeds [3, 1] (mean +- sd)" in stdout
    m = json.loads((tmp_path / "e.json").read_text())
    assert m["overall"]["n"] == 2 * 48 and m["dataset_fingerprint"]["n"] == 48
    assert [s["seed"] for s in m["seeds"]] == [3, 1]
    worst = [s["worst_group_accuracy"] for s in m["seeds"]]
    assert m["across_seeds"]["worst_group_accuracy"]["mean"] == pytest.approx(np.mean(worst))
    assert m["across_seeds"]["worst_group_accuracy"]["sd"] == pytest.approx(np.std(worst, ddof=1))
    predictions = pd.read_csv(tmp_path / m["predictions_file"])
    assert len(predictions) == 96 and predictions["seed"].tolist() == [3] * 48 + [1] * 48
    assert_bad_input(capsys, "audit", tiny_npz, "--model", out, "--out", tmp_path / "a",
                     match=f"audit one of its members, e.g. --model {out / 'seed-3'}")


@pytest.mark.parametrize("value, match", [
    ("0,0", "--seeds repeats 0"), ("0,-1", "-1 is out of range"), ("0,1.5", "'1.5' is not a whole number"),
    ("", "--seeds is empty"), ("a", "'a' is not a whole number"), ("0,,1", "'' is not a whole number"),
    ("4294967296", "out of range"),
])
def test_bad_seeds_are_one_line(capsys, tmp_path, tiny_npz, value, match):
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--seeds", value, *TRAIN_SMALL, match=match)
    assert not (tmp_path / "m").exists()


def test_seed_and_seeds_are_exclusive(capsys, tmp_path, tiny_npz):
    code, _, err = run(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--seed", "1", "--seeds", "0,1")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not allowed with argument --seed" in lines[0], err
    assert not (tmp_path / "m").exists()


def test_parse_seeds():
    assert parse_seeds("2, 0,1") == [2, 0, 1] and parse_seeds("7") == [7]
    with pytest.raises(DebiasError, match="repeats 1, 2"):
        parse_seeds("1,2,1,2")


def test_across_seeds_mean_and_sd_hand_checked(tmp_path):
    path, m = _set(tmp_path, "set", [SEED0, SEED1], [0, 1])
    assert [s["worst_group_accuracy"] for s in m["seeds"]] == pytest.approx([0.8, 0.6])
    assert [s["worst_group"] for s in m["seeds"]] == [{"label": 1, "tone": "dark"}] * 2
    across = m["across_seeds"]
    # mean of 0.8 and 0.6 is 0.7; sample sd = |0.8 - 0.6| / sqrt(2) = 0.1414
    assert across["worst_group_accuracy"] == pytest.approx({"mean": 0.7, "sd": 0.2 / np.sqrt(2), "n": 2})
    # overall: seed 0 (54 + 32 + 95) / 200 = 0.905, seed 1 (54 + 24 + 85) / 200 = 0.815
    assert across["overall_accuracy"]["mean"] == pytest.approx(0.86)
    assert across["overall_accuracy"]["sd"] == pytest.approx(0.09 / np.sqrt(2))
    # gap: seed 0 0.95 - 0.8 = 0.15, seed 1 0.9 - 0.6 = 0.3
    assert across["accuracy_gap"] == pytest.approx({"mean": 0.225, "sd": 0.15 / np.sqrt(2), "n": 2})
    groups = {(g["group"]["label"], g["group"]["tone"]): g for g in across["groups"]}
    assert groups[(1, "light")]["mean"] == pytest.approx(0.9) and groups[(1, "light")]["sd"] == pytest.approx(0)
    assert groups[(1, "dark")]["mean"] == pytest.approx(0.7) and groups[(1, "dark")]["n"] == 2
    # The usual keys hold the pooled predictions: 80 dark rows, 56 right.
    dark = next(g for g in m["groups"] if g["group"] == {"label": 1, "tone": "dark"})
    assert dark["n"] == 80 and dark["accuracy"] == pytest.approx(0.7)
    assert m["overall"]["n"] == 400 and m["dataset_fingerprint"]["n"] == 200
    # Written and read back: the predictions keep their seed column, in blocks.
    loaded = load_evaluation(path)
    assert loaded["predictions"]["seed"].tolist() == [0] * 200 + [1] * 200
    assert loaded["model_set"]["seeds"] == [0, 1]


def test_one_seed_has_no_sd():
    m = combine([_member(SEED0)], [5], n_boot=50)
    assert m["across_seeds"]["worst_group_accuracy"] == pytest.approx({"mean": 0.8, "sd": None, "n": 1})


def test_compare_pairs_members_by_seed(tmp_path):
    _, a = _set(tmp_path, "a", [SEED0, SEED1], [0, 1])
    # The same members listed the other way round: paired by seed, so nothing differs.
    b = combine([_member(SEED1, seed=1), _member(SEED0, seed=0)], [1, 0], n_boot=200)
    r = paired_comparison(a, b, ("a", "b"), n_boot=200)
    assert r["pairing"]["mode"] == "seed-matched" and r["pairing"]["pairs"] == [[0, 0], [1, 1]]
    assert r["overall"]["only_a_right"] == r["overall"]["only_b_right"] == 0 and r["overall"]["mcnemar_p"] == 1.0
    assert r["across_seeds"]["worst_group_accuracy_difference_of_means"] == pytest.approx(0.0)
    # A single model against the set: paired with every member (pooled).
    single = _member(SEED0)
    r = paired_comparison(single, a, ("one", "set"), n_boot=200)
    assert r["pairing"]["mode"] == "all pairs" and r["pairing"]["pairs"] == [[None, 0], [None, 1]]
    assert r["n"] == 400 and r["across_seeds"]["a"]["sd"] is None
    assert r["across_seeds"]["worst_group_accuracy_difference_of_means"] == pytest.approx(0.7 - 0.8)
    # Two single models: exactly as before, no seed keys.
    plain = paired_comparison(single, _member(SEED1), ("x", "y"), n_boot=200)
    assert "pairing" not in plain and "across_seeds" not in plain and plain["n"] == 200


def test_cli_compare_of_model_sets_prints_mean_sd(capsys, tmp_path):
    a, _ = _set(tmp_path, "standard", [SEED0, SEED1], [0, 1])
    better = {(1, "light"): 0.9, (1, "dark"): 0.85, (0, "light"): 0.95}
    b, _ = _set(tmp_path, "dbvae", [better, SEED0], [0, 1])  # worst groups 0.85 and 0.8
    code, out, err = run(capsys, "compare", a, b, "--n-boot", "200", "--out", tmp_path / "cmp.json")
    assert code == 0, err
    assert ("across seeds, worst-group accuracy: standard 0.700 +- 0.141 (2 seeds), dbvae 0.825 +- 0.035 "
            "(2 seeds); difference of the means +12.5 points") in out
    assert "2 member pairs (seed-matched)" in out and out.strip().splitlines()[-1].startswith("dbvae's worst group")
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["across_seeds"]["b"]["worst_group_accuracy"] == pytest.approx([0.85, 0.8])
    # A model set against a single model's evaluation: pooled over all pairs, still one line of mean +- sd.
    single = tmp_path / "single.json"
    write_evaluation(single, _member(SEED0))
    code, out, err = run(capsys, "compare", single, b, "--n-boot", "200")
    assert code == 0, err
    assert "single 0.800 (1 seed), dbvae 0.825 +- 0.035 (2 seeds); difference of the means +2.5 points" in out
    assert "(all pairs)" in out


def test_set_predictions_must_match_the_manifest(capsys, tmp_path):
    path, _ = _set(tmp_path, "set", [SEED0, SEED1], [0, 1])
    csv = tmp_path / "set.predictions.csv"
    frame = pd.read_csv(csv)
    frame.iloc[:200].to_csv(csv, index=False)  # one member's block lost
    code, _, err = run(capsys, "compare", path, path, "--names", "x,y")
    assert code == 2 and "200 rows for 200 samples x 2 seeds" in err and len(err.strip().splitlines()) == 1


def test_members_side_by_side_train_as_they_would_one_after_another(monkeypatch, tmp_path, tiny_dataset):
    import torch

    from audit.checkpoint import load_model
    from audit.models import ModelConfig
    from audit.modelset import train_set
    from audit.training import TrainConfig
    model_cfg = ModelConfig(method="dbvae", image_size=16, latent_dim=4, n_filters=4, dense_units=16)
    train_cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", error_upweight=0.0, val_fraction=0.0)
    monkeypatch.setattr("os.cpu_count", lambda: 2)   # one thread per member process, as below
    monkeypatch.setenv("DEBIAS_MEMBER_PROCESSES", "2")
    logged = []
    side = train_set(tiny_dataset, tmp_path / "side", model_cfg, train_cfg, [0, 1], progress=False,
                     log=logged.append)
    assert "2 at a time, side by side in processes" in logged[0]
    monkeypatch.setenv("DEBIAS_MEMBER_PROCESSES", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train_set(tiny_dataset, tmp_path / "alone", model_cfg, train_cfg, [0, 1], progress=False)
    finally:
        torch.set_num_threads(threads)
    for seed in (0, 1):
        assert side[seed].history[-1]["loss"] == pytest.approx(alone[seed].history[-1]["loss"], rel=1e-6)
        a = load_model(tmp_path / "side" / f"seed-{seed}")[0].state_dict()
        b = load_model(tmp_path / "alone" / f"seed-{seed}")[0].state_dict()
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert is_model_set(tmp_path / "side") and [s for s, _ in members(tmp_path / "side")] == [0, 1]


def test_how_many_members_train_at_once(monkeypatch):
    from audit.memberpool import MAX_COPIED_BYTES, MIN_WORK, member_processes, member_work
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.delenv("DEBIAS_MEMBER_PROCESSES", raising=False)
    assert member_processes(3, "cpu", 1000, one_process_only=False) == 3
    assert member_processes(8, "cpu", 1000, one_process_only=False) == 4
    assert member_processes(3, "cuda", 1000, one_process_only=False) == 1
    assert member_processes(3, "cpu", 1000, one_process_only=True) == 1
    assert member_processes(3, "cpu", MAX_COPIED_BYTES // 2, one_process_only=False) == 1
    # Too little work to repay starting the processes, unless asked for.
    small = member_work(epochs=2, n_images=3000, image_size=64)
    assert small < MIN_WORK and member_processes(3, "cpu", 1000, one_process_only=False, work=small) == 1
    assert member_processes(3, "cpu", 1000, one_process_only=False, work=member_work(6, 6000, 64)) == 3
    monkeypatch.setenv("DEBIAS_MEMBER_PROCESSES", "2")
    assert member_processes(3, "cpu", 1000, one_process_only=False) == 2
    assert member_processes(3, "cpu", 1000, one_process_only=False, work=small) == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("DEBIAS_MEMBER_PROCESSES", bad)
        with pytest.raises(DebiasError, match="DEBIAS_MEMBER_PROCESSES must be a positive whole number"):
            member_processes(3, "cpu", 1000, one_process_only=False)
