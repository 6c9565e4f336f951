"""debias generate: latent Gaussians of subgroups, draws from them or the prior, and the command's bad input."""
import json

import numpy as np
import pytest
from PIL import Image

from audit.errors import DebiasError
from audit.generate import LATENTS_FILE, fit_gaussian, sample_latents

from .test_cli import TRAIN_SMALL, assert_bad_input, run


def test_a_subgroup_gaussian_is_shrunk_and_positive_definite_with_few_members(rng):
    z = rng.normal(size=(5, 20)) * np.arange(1, 21)  # fewer members than dimensions: singular sample covariance
    mean, cov = fit_gaussian(z)
    np.testing.assert_allclose(mean, z.mean(0))
    assert np.linalg.eigvalsh(cov).min() > 0
    # Shrunk towards the diagonal (d / (n + d) = 0.8 here), the variances kept.
    np.testing.assert_allclose(np.diag(cov), np.var(z, axis=0, ddof=1) + 1e-4, rtol=1e-9)
    many = rng.normal(size=(4000, 3))
    _, cov = fit_gaussian(many)
    np.testing.assert_allclose(cov, np.cov(many, rowvar=False) * (1 - 3 / 4003) + np.diag(np.var(many, 0, ddof=1))
                               * 3 / 4003 + 1e-4 * np.eye(3), rtol=1e-9)
    with pytest.raises(DebiasError, match="at least 2 members"):
        fit_gaussian(z[:1])


def test_draws_follow_the_prior_or_the_fitted_gaussian():
    prior = sample_latents(100, 50, seed=3)
    assert prior.shape == (100, 50) and prior.dtype == np.float32 and abs(prior.mean()) < 0.05
    assert np.array_equal(prior, sample_latents(100, 50, seed=3))
    mean, cov = np.array([5.0, -2.0]), np.array([[4.0, 1.0], [1.0, 1.0]])
    z = sample_latents(100, 2, seed=0, mean=mean, cov=cov).astype(np.float64)
    assert np.abs(z.mean(0) - mean).max() < 0.5
    big = np.concatenate([sample_latents(100, 2, seed=s, mean=mean, cov=cov) for s in range(40)]).astype(np.float64)
    np.testing.assert_allclose(np.cov(big, rowvar=False), cov, atol=0.3)
    for bad in (0, 101, 2.5, True):
        with pytest.raises(DebiasError, match="from 1 to 100"):
            sample_latents(bad, 2)


@pytest.fixture(scope="module")
def audited_model(tmp_path_factory, tiny_npz):
    from audit.cli import main
    root = tmp_path_factory.mktemp("generate")
    assert main(["train", str(tiny_npz), "--out", str(root / "m"), *TRAIN_SMALL]) == 0
    assert main(["audit", str(tiny_npz), "--model", str(root / "m"), "--out", str(root / "a"),
                 "--image-size", "16", "--min-subgroup-size", "2", "--no-progress"]) == 0
    return root


def test_generate_from_the_prior_and_from_a_subgroup(capsys, audited_model):
    root = audited_model
    report = json.loads((root / "a" / "report.json").read_text())
    assert (root / "a" / LATENTS_FILE).is_file()
    positive = [s for s in report["subgroups"] if s["class"] == "positive" and s["n"] >= 2]
    assert positive and all((root / "a" / s["generated_grid"]).is_file() for s in positive)
    assert all("generated_grid" not in s for s in report["subgroups"] if s["class"] == "negative")
    code, out, err = run(capsys, "generate", root / "m", "--out", root / "prior.png", "--n", "12")
    assert code == 0 and "12 generated images decoded from the prior" in out, err
    code, out, err = run(capsys, "generate", root / "m", "--out", root / "sub.png", "--n", "4",
                         "--subgroup", positive[0]["id"], "--audit", root / "a")
    assert code == 0 and f"subgroup {positive[0]['id']}'s latent region" in out, err
    for name in ("prior.png", "sub.png"):
        with Image.open(root / name) as im:
            assert im.size[0] > 64 and im.size[1] > 16


def test_generate_bad_input_is_one_line(capsys, audited_model, tiny_npz, tmp_path):
    root = audited_model
    report = json.loads((root / "a" / "report.json").read_text())
    negative = next(s["id"] for s in report["subgroups"] if s["class"] == "negative")
    args = ["generate", root / "m", "--out", tmp_path / "g.png"]
    assert_bad_input(capsys, *args, "--subgroup", negative, "--audit", root / "a", match="negative class")
    assert_bad_input(capsys, *args, "--subgroup", 999, "--audit", root / "a", match="has no subgroup 999")
    assert_bad_input(capsys, *args, "--subgroup", 0, match="--subgroup and --audit go together")
    assert_bad_input(capsys, *args, "--n", 101, match="from 1 to 100")
    assert_bad_input(capsys, *args, "--seed", -1, match="seed must be")
    assert_bad_input(capsys, "generate", root / "m", "--out", tmp_path / "g.jpg", match="must be a .png file")
    assert_bad_input(capsys, *args, "--subgroup", 0, "--audit", tmp_path, match="holds no report.json")
    assert run(capsys, "train", tiny_npz, "--out", tmp_path / "std", "--method", "standard", *TRAIN_SMALL)[0] == 0
    assert_bad_input(capsys, "generate", tmp_path / "std", "--out", tmp_path / "g.png", match="only a DB-VAE")
    assert not (tmp_path / "g.png").exists()
