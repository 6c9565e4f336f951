"""Review decisions in the engine: reading reviews.csv, training without the excluded samples (the
training loop sees a subset; the model directory records it), and the CLI's `--exclude-from`."""
import json

import numpy as np
import pandas as pd
import pytest

import audit.pipeline as pipeline
from audit.errors import DebiasError
from audit.models import ModelConfig
from audit.reviews import Exclusion, read_reviews_csv
from audit.training import TrainConfig

from .test_cli import TRAIN_SMALL, assert_bad_input, run


def _csv(path, text):
    path.write_text(text)
    return path


def test_reads_the_excluded_indices_and_ignores_other_decisions(tmp_path):
    path = _csv(tmp_path / "reviews.csv", "index,decision,tags,note\n3,exclude,blurry,\n1, keep,,\n"
                                          "7,exclude,,\"two\nlines\"\n2,reviewed,,\n3,exclude,,again\n")
    ex = read_reviews_csv(path)
    assert ex.indices.tolist() == [3, 7] and ex.source == str(path)


@pytest.mark.parametrize("text, match", [
    ("index\n1\n", "no decision column"),
    ("index,decision\n1,drop\n", "line 2: decision 'drop' is not one of reviewed, keep, exclude"),
    ("index,decision\n-1,exclude\n", "index '-1' is not a sample index"),
    ("index,decision\n1.0,exclude\n", "index '1.0' is not a sample index"),
    ("index,decision\n1,exclude\n1,keep\n", "sample 1 is marked both exclude and keep"),
    ("index,decision\n1,keep\n", "marks no sample exclude"),
    ("index,decision,label\n0,exclude,0\n", "has label '0' in the reviews but 1 in the training data"),
    ("index,decision,label\n9,exclude,1\n", "past the end of the training data (4 samples)"),
])
def test_bad_reviews_are_refused_naming_the_line(tmp_path, text, match):
    with pytest.raises(DebiasError, match=match.replace("(", r"\(").replace(")", r"\)")):
        read_reviews_csv(_csv(tmp_path / "r.csv", text), labels=np.array([1, 0, 1, 0]))


def test_an_exclusion_must_fit_the_data_and_leave_both_classes(tiny_dataset):
    n = len(tiny_dataset)
    with pytest.raises(DebiasError, match=f"excludes sample {n} but the training data has {n} samples"):
        Exclusion.of([n], "reviews.csv").check_fits(tiny_dataset)
    positives = np.flatnonzero(tiny_dataset.labels == 1)
    with pytest.raises(DebiasError, match="excludes every positive"):
        Exclusion.of(positives, "reviews.csv").check_fits(tiny_dataset)


def test_training_sees_only_the_kept_samples_and_the_model_records_the_exclusion(tmp_path, tiny_dataset,
                                                                                monkeypatch):
    seen = {}
    real_train = pipeline.train

    def spy(dataset, *args, **kwargs):
        seen["dataset"] = dataset
        return real_train(dataset, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train", spy)
    excluded = [0, 5, 30, 47]
    out = tmp_path / "model"
    cfg = TrainConfig(epochs=2, batch_size=8, error_upweight=5.0, error_epoch=1, error_steps=0, device="cpu")
    pipeline.train_model(tiny_dataset, out, ModelConfig(method="dbvae", image_size=16, latent_dim=8), cfg,
                         progress=False, exclude=Exclusion.of(excluded, "audit 3"))

    trained = seen["dataset"]
    kept = np.setdiff1d(np.arange(len(tiny_dataset)), excluded)
    assert len(trained) == len(tiny_dataset) - 4
    assert np.array_equal(trained.images, tiny_dataset.images[kept])
    assert np.array_equal(trained.labels, tiny_dataset.labels[kept])
    record = json.loads((out / "exclusion.json").read_text())
    assert record == {"source": "audit 3", "n_total": 48, "n_excluded": 4, "n_trained": 44, "excluded": excluded}
    config = json.loads((out / "config.json").read_text())
    assert config["exclusion"] == {"source": "audit 3", "n_total": 48, "n_excluded": 4, "n_trained": 44}
    assert config["epochs_completed"] == 2

    # The error set covers the trained samples; an audit of the whole dataset spreads it back (0 where excluded).
    assert np.load(out / "error_set.npy").shape == (44,)
    flags, note = pipeline.load_error_set(out, 48)
    assert note is None and flags.shape == (48,) and not flags[excluded].any()
    assert np.array_equal(flags[kept], np.load(out / "error_set.npy"))

    # A resumed run must leave out the same samples.
    with pytest.raises(DebiasError, match="resume with the same --exclude-from"):
        pipeline.train_model(tiny_dataset, out, ModelConfig(method="dbvae", image_size=16, latent_dim=8), cfg,
                             resume=True, progress=False, exclude=Exclusion.of([1], "audit 4"))
    with pytest.raises(DebiasError, match="left out 4 samples"):
        pipeline.train_model(tiny_dataset, out, ModelConfig(method="dbvae", image_size=16, latent_dim=8), cfg,
                             resume=True, progress=False)


def test_cli_exclude_from_an_audit_folder(capsys, tmp_path, tiny_npz, tiny_dataset):
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    labels = tiny_dataset.labels
    # What `debias audit` wrote beside the reviews: this dataset's samples in input order.
    pd.DataFrame({"index": np.arange(len(labels)), "label": labels}).to_csv(audit_dir / "samples.csv", index=False)
    reviews = _csv(audit_dir / "reviews.csv", f"index,decision,label\n2,exclude,{labels[2]}\n9,keep,{labels[9]}\n"
                                              f"11,exclude,{labels[11]}\n")
    model = tmp_path / "model"
    code, out, err = run(capsys, "train", tiny_npz, "--method", "standard", "--out", model, *TRAIN_SMALL,
                         "--exclude-from", reviews)
    assert code == 0, err
    assert f"leaving out 2 of 48 samples marked exclude in {reviews}" in out
    config = json.loads((model / "config.json").read_text())
    assert config["exclusion"] == {"source": str(reviews), "n_total": 48, "n_excluded": 2, "n_trained": 46}
    assert json.loads((model / "exclusion.json").read_text())["excluded"] == [2, 11]

    # Reviews of another dataset's audit: exit 2, one line, nothing written.
    pd.DataFrame({"index": np.arange(10), "label": np.r_[np.ones(5), np.zeros(5)].astype(int)}).to_csv(
        audit_dir / "samples.csv", index=False)
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m2", *TRAIN_SMALL, "--exclude-from", reviews,
                     match="do not match the training data")
    assert not (tmp_path / "m2").exists()
    (audit_dir / "samples.csv").unlink()
    _csv(reviews, "index,decision\n48,exclude\n")
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m2", *TRAIN_SMALL, "--exclude-from", reviews,
                     match="excludes sample 48 but the training data has 48 samples")
    assert_bad_input(capsys, "train", tiny_npz, "--out", tmp_path / "m2", *TRAIN_SMALL, "--exclude-from",
                     tmp_path / "nope.csv", match="no such reviews file")
    assert not (tmp_path / "m2").exists()
