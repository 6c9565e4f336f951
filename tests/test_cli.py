"""The `debias` command line: bad input gives one line and exit code 2; the whole loop works."""
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from audit.cli import main
from audit.models import ModelConfig, build_model

TRAIN_SMALL = ["--image-size", "16", "--latent-dim", "8", "--epochs", "1", "--batch-size", "8", "--no-progress"]


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse rejects bad options by exiting, as a console script should
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(capsys, *argv, match: str):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("debias: error:"), err
    assert match in lines[0], lines[0]


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _images(n, size=16):
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("command", ["train", "audit", "evaluate"])
def test_missing_file(capsys, tmp_path, command):
    argv = {"train": ["train", tmp_path / "nope.npz", "--out", tmp_path / "m"],
            "audit": ["audit", tmp_path / "nope.npz", "--model", tmp_path, "--out", tmp_path / "a",
                      "--image-size", "16"],
            "evaluate": ["evaluate", tmp_path, tmp_path / "nope.npz", "--image-size", "16"]}[command]
    assert_bad_input(capsys, *argv, match="no such file or folder")
    assert not (tmp_path / "m").exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize("make, match", [
    (lambda p: p.with_suffix(".csv").write_text("a,b\n") and p.with_suffix(".csv"), "unknown dataset format"),
    (lambda p: _npz(p, images=_images(4)), "has no 'labels' array"),
    (lambda p: _npz(p, images=_images(4), labels=np.array([0, 1, 2, 1])), "must be 0 or 1"),
    (lambda p: _npz(p, images=_images(4), labels=np.ones(4, int)), "no negative (label 0) samples"),
    (lambda p: _npz(p, images=_images(4), labels=np.array([0, 1, 1])), "labels in"),
    (lambda p: _npz(p, images=_images(4), labels=np.array([0, 1, 1, 0]), attr_tone=np.array(["a"] * 3)),
     "attr_tone"),
])
def test_bad_datasets(capsys, tmp_path, make, match):
    data = make(tmp_path / "data.npz")
    assert_bad_input(capsys, "train", data, "--out", tmp_path / "m", *TRAIN_SMALL, match=match)
    assert not (tmp_path / "m").exists()


def _class_folders(root, n=3):
    for cls in ("face", "background"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_images(1)[0]).save(root / cls / f"{i}.png")
    return root


def test_corrupt_image_in_folder_is_named(capsys, tmp_path):
    root = _class_folders(tmp_path / "data")
    (root / "face" / "broken.png").write_bytes(b"not a png at all")
    assert_bad_input(capsys, "train", root, "--out", tmp_path / "m", *TRAIN_SMALL, match="face/broken.png")
    assert not (tmp_path / "m").exists()


def test_non_image_file_in_folder_is_named(capsys, tmp_path):
    root = _class_folders(tmp_path / "data")
    (root / "background" / "notes.txt").write_text("hello")
    assert_bad_input(capsys, "train", root, "--out", tmp_path / "m", *TRAIN_SMALL, match="background/notes.txt")


def test_zip_entry_escaping_the_folder(capsys, tmp_path):
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:
        z.writestr("face/0.png", b"x")
        z.writestr("../evil.png", b"x")
    assert_bad_input(capsys, "train", tmp_path / "data.zip", "--out", tmp_path / "m", *TRAIN_SMALL,
                     match="'../evil.png'")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "m").exists()


def test_model_dir_from_another_architecture(capsys, tmp_path, tiny_npz):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign / "model.pt")
    assert_bad_input(capsys, "audit", tiny_npz, "--model", foreign, "--out", tmp_path / "a", "--image-size", "16",
                     match="was not written by debias")
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    standard = build_model(ModelConfig(method="standard", image_size=16))
    torch.save({"model": standard.state_dict(), "model_config": ModelConfig(image_size=16).to_dict(),
                "version": "0.1.0"}, mismatched / "model.pt")
    assert_bad_input(capsys, "evaluate", mismatched, tiny_npz, match="does not match the dbvae architecture")
    assert_bad_input(capsys, "audit", tiny_npz, "--model", tmp_path / "none", "--out", tmp_path / "a",
                     "--image-size", "16", match="no such model directory")
    assert not (tmp_path / "a").exists()


def test_bad_options_are_one_line(capsys, tmp_path, tiny_npz):
    assert_bad_input(capsys, "synth", tmp_path / "x.npz", "--prevalence", "skin_tone=blue:1", match="unknown value")
    assert_bad_input(capsys, "synth", tmp_path / "x.png", match="must be a .npz file")
    code, _, err = run(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--epochs", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "expected a number >= 1" in err
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--image-size", "24", match="multiple of 16")
    assert_bad_input(capsys, "compare", tmp_path / "missing.json", match="no such metrics file")
    for option, value in (("--lr", "nan"), ("--kl-weight", "inf"), ("--strength", "Infinity")):
        code, _, err = run(capsys, "train", tiny_npz, "--out", tmp_path / "m", option, value)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "expected a finite number" in err, err
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--seed", "-1",
                     match="seed must be a whole number from 0 to 4294967295")
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--kl-weight", "1e308",
                     match="kl_weight must be a number from 0 to 100")
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--val-fraction", "0.7",
                     match="val_fraction must be a share from 0 to 0.5")
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m", "--error-schedule", "auto",
                     "--val-fraction", "0", match="auto chooses on the held-out samples: set val_fraction > 0")
    assert_bad_input(capsys, "audit", tiny_npz, "--model", tmp_path / "m", "--out", tmp_path / "a",
                     "--anomaly-tail", "0.7", match="anomaly tail must be a share in [0, 0.5)")
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_end_to_end_synth_train_audit_evaluate_compare(capsys, tmp_path):
    data, test = tmp_path / "train.npz", tmp_path / "test.npz"
    assert run(capsys, "synth", data, "--faces", "40", "--nonfaces", "40", "--image-size", "16")[0] == 0
    assert run(capsys, "synth", test, "--faces", "24", "--nonfaces", "24", "--image-size", "16", "--balanced",
               "--seed", "1")[0] == 0
    for method in ("standard", "dbvae"):
        code, out, err = run(capsys, "train", data, "--method", method, "--out", tmp_path / method, *TRAIN_SMALL)
        assert code == 0, err
        assert f"trained {method} for 1 epoch " in out

    code, out, err = run(capsys, "audit", data, "--model", tmp_path / "dbvae", "--out", tmp_path / "audit",
                         "--density", "gmm")
    assert code == 0, err and "most under-represented latent features" in out
    assert out.splitlines()[1].startswith("verdict: ") and "samples flagged as anomalies" in out
    samples = pd.read_csv(tmp_path / "audit" / "samples.csv")
    assert list(samples.columns[:6]) == ["index", "label", "log_density", "sampling_weight", "anomaly_score",
                                         "is_anomaly"]
    assert len(samples) == 80 and (samples["index"] == np.arange(80)).all()
    assert {"skin_tone", "kind", "glasses"} <= set(samples.columns)
    with np.load(data) as arrays:
        assert (samples["label"].to_numpy() == arrays["labels"]).all()
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    for key in ("summary", "latent_histograms", "under_represented_features", "attribute_relations",
                "representation", "anomalies", "figures"):
        assert key in report
    for name in report["figures"].values():
        assert Image.open(tmp_path / "audit" / name).size[0] > 100

    paths = {}
    for method in ("standard", "dbvae"):
        paths[method] = tmp_path / f"{method}.json"
        code, out, err = run(capsys, "evaluate", tmp_path / method, test, "--group-by", "skin_tone,kind",
                             "--out", paths[method])
        assert code == 0, err and "worst group" in out
        metrics = json.loads(paths[method].read_text())
        assert metrics["overall"]["accuracy"] >= 0 and len(metrics["groups"]) == 6
        for key in ("worst_group_accuracy", "accuracy_variance", "accuracy_gap"):
            assert key in metrics
        assert set(metrics["groups"][0]["group"]) == {"label", "skin_tone", "kind"}
    code, out, err = run(capsys, "compare", paths["standard"], paths["dbvae"])
    assert code == 0 and "standard" in out.splitlines()[0] and "dbvae" in out.splitlines()[0]


def test_audit_of_a_class_too_small_to_cluster_is_one_line(capsys, tmp_path, tiny_npz):
    from audit.synth import make_synthetic, save_npz

    model = tmp_path / "model"
    assert run(capsys, "train", tiny_npz, "--out", model, *TRAIN_SMALL)[0] == 0
    lopsided = tmp_path / "lopsided.npz"
    save_npz(make_synthetic(30, 6, image_size=16, seed=3), lopsided)
    assert_bad_input(capsys, "audit", lopsided, "--model", model, "--out", tmp_path / "audit",
                     match="the negative class has 6 samples, too few to cluster into subgroups")
    assert not (tmp_path / "audit").exists()
