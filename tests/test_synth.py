"""Tests for audit.synth: the synthetic biased-faces generator."""
import numpy as np
import pytest

from audit.errors import DebiasError
from audit.synth import (
    DEFAULT_PREVALENCE,
    FACE_ATTRIBUTES,
    NONFACE_ATTRIBUTES,
    SKIN,
    make_synthetic,
    parse_prevalence,
    save_npz,
)

ALL = {**FACE_ATTRIBUTES, **NONFACE_ATTRIBUTES}


@pytest.fixture(scope="module")
def biased():
    return make_synthetic(60, 40, image_size=16, seed=3)


def test_shapes_dtypes_labels(biased):
    ds = biased
    assert ds.images.shape == (100, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (100,) and ds.labels.dtype == np.int64
    assert ds.class_counts() == {1: 60, 0: 40}
    assert 0 < ds.labels[:50].sum() < 50  # shuffled, not faces-first
    assert list(ds.attributes.columns) == list(ALL)
    assert all(isinstance(v, str) for col in ds.attributes for v in ds.attributes[col])
    assert ds.images.std() > 10  # drawn content, not a blank canvas


@pytest.mark.parametrize("size", [8, 12, 24, 32, 48])
def test_other_image_sizes(size):
    ds = make_synthetic(12, 6, image_size=size, seed=0, balanced=True, prevalence={"glasses": {"yes": 1}})
    assert ds.images.shape == (18, size, size, 3)


def _expected_ok(count: int, p: float, n: int) -> bool:
    return abs(count - p * n) < 1  # stratified draw: p*n rounded, not iid


def test_counts_follow_default_prevalence(biased):
    attrs, labels = biased.attributes, biased.labels
    for label, spec in ((1, FACE_ATTRIBUTES), (0, NONFACE_ATTRIBUTES)):
        rows = attrs[labels == label]
        for name in spec:
            counts = rows[name].value_counts()
            assert counts.sum() == len(rows)
            for value, p in DEFAULT_PREVALENCE[name].items():
                assert _expected_ok(counts.get(value, 0), p, len(rows)), (label, name, value)
    faces = attrs[labels == 1]
    assert (faces["skin_tone"] == "dark").sum() == 3  # 5% of 60: the minority is present


def test_not_applicable_columns(biased):
    attrs, labels = biased.attributes, biased.labels
    for name in FACE_ATTRIBUTES.keys() - NONFACE_ATTRIBUTES.keys():
        assert (attrs.loc[labels == 0, name] == "n/a").all()
        assert attrs.loc[labels == 1, name].isin(FACE_ATTRIBUTES[name]).all()
    assert (attrs.loc[labels == 1, "kind"] == "n/a").all()
    assert attrs.loc[labels == 0, "kind"].isin(NONFACE_ATTRIBUTES["kind"]).all()
    for shared in ("lighting", "background"):
        assert attrs[shared].isin(ALL[shared]).all()


def test_custom_prevalence_and_normalisation():
    ds = make_synthetic(20, 10, image_size=16, seed=1,
                        prevalence={"skin_tone": {"dark": 3, "light": 1}, "kind": {"object": 1}})
    faces = ds.attributes[ds.labels == 1]
    assert (faces["skin_tone"] == "dark").sum() == 15
    assert (faces["skin_tone"] == "light").sum() == 5
    assert (ds.attributes.loc[ds.labels == 0, "kind"] == "object").all()


def test_bad_prevalence_argument():
    with pytest.raises(DebiasError, match="valid values"):
        make_synthetic(2, 2, image_size=16, prevalence={"skin_tone": {"purple": 1.0}})
    with pytest.raises(DebiasError, match="n_faces"):
        make_synthetic(0, 2, image_size=16)
    with pytest.raises(DebiasError, match="image_size"):
        make_synthetic(2, 2, image_size=4)


def test_seed_reproducibility():
    a = make_synthetic(6, 6, image_size=16, seed=7)
    b = make_synthetic(6, 6, image_size=16, seed=7)
    c = make_synthetic(6, 6, image_size=16, seed=8)
    assert a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.labels, b.labels) and a.attributes.equals(b.attributes)
    assert a.images.tobytes() != c.images.tobytes()


def test_balanced_mode():
    ds = make_synthetic(36, 18, image_size=16, seed=2, balanced=True)
    for label, spec in ((1, FACE_ATTRIBUTES), (0, NONFACE_ATTRIBUTES)):
        rows = ds.attributes[ds.labels == label]
        for name, values in spec.items():
            counts = rows[name].value_counts()
            assert all(_expected_ok(counts.get(v, 0), 1 / len(values), len(rows)) for v in values), name


def test_parse_prevalence_happy_path():
    attr, probs = parse_prevalence(" skin_tone = light:0.5, medium:0.45 ,dark:0.05")
    assert attr == "skin_tone"
    assert probs == pytest.approx({"light": 0.5, "medium": 0.45, "dark": 0.05})
    attr, probs = parse_prevalence("glasses=yes:1,no:3")
    assert probs == pytest.approx({"no": 0.75, "yes": 0.25})  # normalised
    assert parse_prevalence("kind=object:2")[1] == {"scene": 0.0, "texture": 0.0, "object": 1.0}


@pytest.mark.parametrize("spec, message", [
    ("skin_tone", "expected ATTRIBUTE=VALUE:P"),
    ("=light:1", "expected ATTRIBUTE=VALUE:P"),
    ("skin_tone=", "expected ATTRIBUTE=VALUE:P"),
    ("skin_tone=light", "expected VALUE:P"),
    ("skin_tone=light:0.5,", "expected VALUE:P"),
    ("skin_tone=light:abc", "expected a number"),
    ("skin_tone=light:1,light:2", "twice"),
    ("eye_colour=blue:1", "valid attributes: skin_tone, hair"),
    ("skin_tone=purple:1", "valid values: light, medium, dark"),
    ("skin_tone=light:-0.1,dark:1", ">= 0"),
    ("skin_tone=light:nan", ">= 0"),
    ("skin_tone=light:0,dark:0", "all zero"),
])
def test_parse_prevalence_errors(spec, message):
    with pytest.raises(DebiasError, match=message):
        parse_prevalence(spec)


def test_save_npz_round_trip(tmp_path, biased):
    path = tmp_path / "synth.npz"
    save_npz(biased, path)
    assert [p.name for p in tmp_path.iterdir()] == ["synth.npz"]  # no temp file left behind
    with np.load(path) as z:
        assert np.array_equal(z["images"], biased.images)
        assert np.array_equal(z["labels"], biased.labels)
        for name in ALL:
            arr = z[f"attr_{name}"]
            assert arr.dtype.kind == "U"
            assert arr.tolist() == biased.attributes[name].tolist()


def test_faces_differ_from_nonfaces_statistically():
    ds = make_synthetic(60, 60, image_size=32, seed=5, balanced=True,
                        prevalence={"lighting": {"bright": 1}, "skin_tone": {"light": 1, "dark": 1}})
    im, is_face = ds.images.astype(float), ds.labels == 1
    tone = ds.attributes["skin_tone"].to_numpy()
    centre = im[:, 12:20, 12:20].mean(axis=(1, 2, 3))
    assert centre[tone == "dark"].mean() + 80 < centre[tone == "light"].mean()
    # eyes and brows make the band above the centre darker than the cheeks below it
    eyes, cheeks = im[:, 13:16, 9:23].mean(axis=(1, 2, 3)), im[:, 17:20, 9:23].mean(axis=(1, 2, 3))
    assert (cheeks - eyes)[is_face].mean() > 10 > (cheeks - eyes)[~is_face].mean()
    # most of a face's centre is skin-coloured; few non-faces' are (only some objects)
    palette = np.array(list(SKIN.values()), float)
    dist = np.linalg.norm(im[:, 14:22, 11:21, None, :] - palette, axis=-1).min(axis=-1)
    skin_fraction = (dist < 45).mean(axis=(1, 2))
    assert skin_fraction[is_face].mean() > 0.6 > 0.3 > skin_fraction[~is_face].mean()
