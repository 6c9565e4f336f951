"""audit.figures: every function writes a valid PNG atomically and rejects bad input."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from audit import figures
from audit.errors import DebiasError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)


def _histogram(dim, rng, classes=("positive", "negative"), **extra):
    edges = np.linspace(-2, 2, 6)
    return {"dimension": dim, "edges": edges.tolist(),
            "counts": {c: rng.integers(0, 40, 5).tolist() for c in classes}, **extra}


def assert_png(path, folder):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        assert im.width > 50 and im.height > 50
    # atomic write: nothing but finished PNGs in the folder
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".png")) == []
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- each figure writes a PNG

def test_image_grid(tmp_path, images):
    out = figures.image_grid(images, tmp_path / "grid.png", ncols=4,
                             captions=[f"score {i} a long caption that wraps" for i in range(10)], title="grid")
    assert out == tmp_path / "grid.png"
    assert_png(out, tmp_path)


def test_image_grid_greyscale_and_nested_folder(tmp_path, rng):
    grey = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    out = figures.image_grid(grey, str(tmp_path / "sub" / "grey.png"))
    assert_png(out, tmp_path / "sub")


def test_subgroup_grid(tmp_path, images):
    out = figures.subgroup_grid(images[:8], images[8:], tmp_path / "subgroup_3.png", title="subgroup 3")
    assert_png(out, tmp_path)
    assert_png(figures.subgroup_grid(images[:3], images[:0], tmp_path / "few.png"), tmp_path)   # no others
    with pytest.raises(DebiasError, match="both empty"):
        figures.subgroup_grid(images[:0], images[:0], tmp_path / "x.png")


def test_sampling_extremes(tmp_path, images, rng):
    weight = rng.random(10)
    weight /= weight.sum()
    out = figures.sampling_extremes(images, weight, tmp_path / "extremes.png", n=4, title="extremes")
    assert_png(out, tmp_path)


@pytest.mark.parametrize("n", [25, 7, 1])
def test_sampling_extremes_n_larger_or_not_square(tmp_path, images, rng, n):
    out = figures.sampling_extremes(images[:5], rng.random(5), tmp_path / "e.png", n=n)
    assert_png(out, tmp_path)


def test_traversal_strips(tmp_path, rng):
    strips = [rng.integers(0, 256, (s, 16, 16, 3), dtype=np.uint8) for s in (7, 7, 5)]
    values = [np.linspace(-3, 3, len(s)) for s in strips]
    out = figures.traversal_strips(strips, ["latent 37 (rank 1)", "latent 4 (rank 2)", "latent 9 (rank 3)"],
                                   values, tmp_path / "traversal.png", title="traversals")
    assert_png(out, tmp_path)


def test_latent_histograms_with_missing_class(tmp_path, rng):
    hists = [_histogram(0, rng, rank=1, rare_range=[0.5, 1.5]),
             _histogram(3, rng, classes=("positive",)),
             _histogram(7, rng, classes=("negative",), rank=3, rare_range=[-5, 5])]
    hists.append({**_histogram(9, rng), "counts": {"positive": [10000, 3, 0, 1, 20]}})  # log scale
    out = figures.latent_histograms(hists, tmp_path / "hists.png", title="histograms")
    assert_png(out, tmp_path)


def test_latent_histograms_more_than_max_panels(tmp_path, rng):
    hists = [_histogram(i, rng) for i in range(figures.MAX_PANELS + 3)]
    assert_png(figures.latent_histograms(hists, tmp_path / "h.png"), tmp_path)


def test_reconstructions(tmp_path, rng):
    imgs = rng.integers(0, 256, (15, 16, 16, 3), dtype=np.uint8)
    recs = rng.integers(0, 256, (15, 16, 16, 3), dtype=np.uint8)
    err = np.abs(imgs / 255.0 - recs / 255.0).mean((1, 2, 3))
    out = figures.reconstructions(imgs, recs, tmp_path / "recons.png", errors=err, title="recons")
    assert_png(out, tmp_path)
    assert_png(figures.reconstructions(imgs[:2], recs[:2], tmp_path / "r2.png"), tmp_path)


def test_bar_chart(tmp_path):
    values = {"label=1, skin=dark": 0.81, "label=1, skin=light": 0.97, "label=0": 0.99}
    out = figures.bar_chart(values, tmp_path / "bars.png", title="accuracy", xlabel="accuracy")
    assert_png(out, tmp_path)
    assert_png(figures.bar_chart({"a": -1.0, "b": 2.0}, tmp_path / "b2.png", highlight_min=False), tmp_path)
    assert_png(figures.bar_chart({"a": 1.0, "b": 1.0}, tmp_path / "b3.png"), tmp_path)


def test_overwrites_existing_file(tmp_path, images):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")
    figures.image_grid(images, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_png(path, tmp_path)


def test_failed_write_leaves_no_temp_file(tmp_path, images, monkeypatch):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        figures.image_grid(images, path)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    assert path.read_bytes() == b"old"          # the old file is untouched until the new one is complete


def test_threads_write_in_parallel(tmp_path, images):
    errors = []

    def work(i):
        try:
            figures.image_grid(images, tmp_path / f"g{i}.png", title=f"thread {i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(4):
        assert_png(tmp_path / f"g{i}.png", tmp_path)


# --------------------------------------------------------------------------- bad input

def test_empty_images_raise(tmp_path):
    empty = np.zeros((0, 16, 16, 3), np.uint8)
    with pytest.raises(DebiasError, match="images is empty"):
        figures.image_grid(empty, tmp_path / "x.png")
    with pytest.raises(DebiasError, match="empty"):
        figures.sampling_extremes(empty, np.zeros(0), tmp_path / "x.png")
    with pytest.raises(DebiasError, match="empty"):
        figures.traversal_strips([], [], [], tmp_path / "x.png")
    with pytest.raises(DebiasError, match="empty"):
        figures.latent_histograms([], tmp_path / "x.png")
    with pytest.raises(DebiasError, match="empty"):
        figures.bar_chart({}, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_mismatched_lengths_raise(tmp_path, images, rng):
    with pytest.raises(DebiasError, match="sampling_weight has 9 values but images has 10"):
        figures.sampling_extremes(images, rng.random(9), tmp_path / "x.png")
    with pytest.raises(DebiasError, match="captions has 3 entries but images has 10"):
        figures.image_grid(images, tmp_path / "x.png", captions=["a", "b", "c"])
    with pytest.raises(DebiasError, match="recons has shape"):
        figures.reconstructions(images, images[:5], tmp_path / "x.png")
    with pytest.raises(DebiasError, match="errors has 4 values"):
        figures.reconstructions(images, images, tmp_path / "x.png", errors=np.zeros(4))
    strip = images[:5]
    with pytest.raises(DebiasError, match="labels has 1 entries but strips has 2"):
        figures.traversal_strips([strip, strip], ["a"], [np.zeros(5)] * 2, tmp_path / "x.png")
    with pytest.raises(DebiasError, match=r"values\[1\] has 4 values but strips\[1\] has 5"):
        figures.traversal_strips([strip, strip], ["a", "b"], [np.zeros(5), np.zeros(4)], tmp_path / "x.png")
    bad = _histogram(0, rng)
    bad["counts"]["positive"] = [1, 2, 3]
    with pytest.raises(DebiasError, match=r"histograms\[0\]\['counts'\]\['positive'\] has 3 values"):
        figures.latent_histograms([bad], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"images": np.zeros((2, 16, 16, 3), np.float32)}, "dtype float32"),
    ({"images": np.zeros((2, 16, 16, 4), np.uint8)}, "shape"),
    ({"ncols": 0}, "ncols"),
    ({"path": "figure.jpg"}, "must end in .png"),
])
def test_image_grid_bad_input(tmp_path, images, kwargs, match):
    args = {"images": images, **kwargs, "path": tmp_path / kwargs.get("path", "x.png")}
    with pytest.raises(DebiasError, match=match):
        figures.image_grid(**args)
    assert list(tmp_path.iterdir()) == []


def test_other_bad_input(tmp_path, images, rng):
    with pytest.raises(DebiasError, match="n must be a positive integer"):
        figures.sampling_extremes(images, rng.random(10), tmp_path / "x.png", n=0)
    with pytest.raises(DebiasError, match="NaN"):
        figures.sampling_extremes(images, np.full(10, np.nan), tmp_path / "x.png")
    with pytest.raises(DebiasError, match="lacks dimension"):
        figures.latent_histograms([{"edges": [0, 1], "counts": {"positive": [1]}}], tmp_path / "x.png")
    with pytest.raises(DebiasError, match="unknown classes"):
        figures.latent_histograms([{**_histogram(0, rng), "counts": {"all": [1] * 5}}], tmp_path / "x.png")
    with pytest.raises(DebiasError, match="rare_range"):
        figures.latent_histograms([_histogram(0, rng, rare_range=[1.0, 0.0])], tmp_path / "x.png")
    with pytest.raises(DebiasError, match="'b' are not finite"):
        figures.bar_chart({"a": 1.0, "b": float("nan")}, tmp_path / "x.png")
    strips = [images[:3], rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)]
    with pytest.raises(DebiasError, match="same size"):
        figures.traversal_strips(strips, ["a", "b"], [np.zeros(3)] * 2, tmp_path / "x.png")


def test_image_strip_enlarges_and_spaces_images(tmp_path, rng):
    images = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    out = figures.image_strip(images, tmp_path / "strip.png")
    strip = np.asarray(Image.open(out))
    assert strip.shape == (64, 9 * 64 + 8 * 2, 3)
    np.testing.assert_array_equal(strip[::4, :64:4], images[0])   # nearest-neighbour x4
    assert (strip[:, 64:66] == 255).all()                          # the gap
