"""Hostile inputs are refused before they are read: named problem, no cache file, no temp folder, bounded memory."""
from __future__ import annotations

import io
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.cli import main
from audit.errors import DatasetError
from audit.loaders import arrays as arrays_module
from audit.loaders import load_dataset
from audit.loaders import zips as zips_module

N, SIZE = 12, 16
LABELS = np.array([1, 0] * (N // 2), dtype=np.int64)


def images(n: int = N, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def tmp_dir(tmp_path, monkeypatch) -> Path:
    """Where tempfile puts zip extractions and temporary image files during the test."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def refused(tmp_path, tmp_dir):
    """refused(path, match, **limits): the load fails naming `match`, leaving no cache entry and no temp file."""

    def check(path: Path, match: str, **kwargs) -> str:
        cache = tmp_path / "cache"
        with pytest.raises(DatasetError, match=match) as info:
            load_dataset(path, image_size=SIZE, cache_dir=cache, **kwargs)
        assert not cache.exists() or list(cache.iterdir()) == []
        assert list(tmp_dir.iterdir()) == []
        message = str(info.value)
        assert "\n" not in message  # the CLI prints it as one line
        return message

    return check


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def forged_npz(path: Path, members: dict[str, tuple[str, tuple, bytes]]) -> Path:
    """A compressed .npz whose members carry any header: name -> (dtype descr, shape, payload)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (descr, shape, payload) in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
            z.writestr(f"{name}.npy", buf.getvalue() + payload)
    return path


def h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w", track_order=True) as f:
        f["images"] = images()
        f["labels"] = LABELS
        for name, value in datasets.items():
            if callable(value):
                value(f, name)
            else:
                f[name] = value
    return path


# --------------------------------------------------------------------------- HDF5 references out of the file


def valid_h5(path: Path) -> Path:
    """Another HDF5 file holding a perfectly good dataset: following a reference to it would 'work'."""
    return h5(path, attr_group=np.array([1, 2, 3] * (N // 3)))


def external_storage(target: Path, n: int):
    """Replace a dataset by one whose raw bytes live in `target`, outside the file."""
    def make(f, name):
        shape = (n, SIZE, SIZE, 3) if name == "images" else (n,)
        if name in f:
            del f[name]
        f.create_dataset(name, shape=shape, dtype="u1", external=[(str(target), 0, int(np.prod(shape)))])
    return make


def replace_with(link_factory):
    def make(f, name):
        if name in f:
            del f[name]
        f[name] = link_factory()
    return make


def virtual(source: Path, name: str, shape, dtype):
    def make(f, ds_name):
        if ds_name in f:
            del f[ds_name]
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[...] = h5py.VirtualSource(str(source), name, shape=shape)
        f.create_virtual_dataset(ds_name, layout)
    return make


@pytest.mark.parametrize("target", ["images", "labels", "attr_group"])
def test_h5_external_raw_storage_is_refused(tmp_path, refused, target):
    raw = tmp_path / "secret.bin"
    raw.write_bytes(images().tobytes())  # readable as data: only the check stops it
    path = tmp_path / "d.h5"
    h5(path, attr_group=np.arange(N))
    with h5py.File(path, "a") as f:
        external_storage(raw, N)(f, target)
    msg = refused(path, rf"'{target}' in .*d\.h5 keeps its data in external file\(s\).*store the data itself")
    assert "secret.bin" in msg


@pytest.mark.parametrize("target", ["images", "labels", "attr_group"])
def test_h5_external_link_is_not_followed(tmp_path, refused, target):
    other = valid_h5(tmp_path / "other.h5")
    path = h5(tmp_path / "d.h5", attr_group=np.arange(N))
    with h5py.File(path, "a") as f:
        replace_with(lambda: h5py.ExternalLink(str(other), target))(f, target)
    refused(path, rf"'{target}' in .* is an external link to another file; links are never followed")


def test_h5_soft_link_is_refused(tmp_path, refused):
    path = h5(tmp_path / "d.h5", real_labels=LABELS)
    with h5py.File(path, "a") as f:
        replace_with(lambda: h5py.SoftLink("/real_labels"))(f, "labels")
    refused(path, r"'labels' in .* is a soft link")


def test_h5_virtual_dataset_is_refused(tmp_path, refused):
    other = valid_h5(tmp_path / "other.h5")
    path = h5(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        virtual(other, "images", (N, SIZE, SIZE, 3), np.uint8)(f, "images")
    refused(path, r"'images' in .* is a virtual dataset, which reads its data from other files")


def test_h5_filter_needing_a_plugin_is_refused(tmp_path, refused):
    def unknown_filter(f, name):
        del f[name]
        f.create_dataset(name, shape=(N,), dtype="i8", chunks=(N,), compression=32001, allow_unknown_filter=True)
    path = h5(tmp_path / "d.h5", labels=unknown_filter)
    refused(path, r"'labels' in .* HDF5 filter 32001 .* needs a plugin.*gzip, lzf or no compression")


def test_h5_huge_chunks_are_refused(tmp_path, refused, monkeypatch):
    monkeypatch.setattr(arrays_module, "MAX_H5_CHUNK_BYTES", 1000)
    path = h5(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        del f["images"]
        f.create_dataset("images", data=images(), chunks=(N, SIZE, SIZE, 3))
    refused(path, r"stored in chunks of \(12, 16, 16, 3\).*smaller chunks")


def test_h5_links_outside_what_is_read_are_listed_not_followed(tmp_path):
    path = h5(tmp_path / "d.h5", meta=lambda f, n: f.__setitem__(n, h5py.ExternalLink("/no/such/file.h5", "x")))
    ds = load_dataset(path, image_size=SIZE)
    assert len(ds) == N and any("ignored datasets meta" in p for p in ds.problems)


# --------------------------------------------------------------------------- declared sizes (.npz, .h5)


def zeros_npz(path: Path, n: int) -> Path:
    """A compressed .npz whose images are all zeros: ~1000x smaller than it declares."""
    return forged_npz(path, {"images": ("|u1", (n, 64, 64, 3), bytes(n * 64 * 64 * 3)),
                             "labels": ("<i8", (n,), np.array([0, 1] * (n // 2), "<i8").tobytes())})


def test_npz_decompression_bomb_is_refused_fast_in_little_memory(tmp_path, refused):
    path = zeros_npz(tmp_path / "bomb.npz", 2000)  # 24 MB of images in ~25 KB
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    start = time.perf_counter()
    try:
        refused(path, r"array 'images' in .* declares 24576\d+ bytes but stores only \d+ \(\d+x, more than "
                      r"max_expansion=200\): a decompression bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1 and peak < 5 << 20


def test_npz_header_declaring_terabytes_is_refused_before_reading(tmp_path, refused, monkeypatch):
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda *a: pytest.fail("read an array"))
    path = forged_npz(tmp_path / "huge.npz", {"images": ("|u1", (200_000, 400, 400, 3), b""),
                                              "labels": ("<i8", (200_000,), b"")})
    tracemalloc.start()
    try:
        refused(path, r"array 'images' \(200000, 400, 400, 3\) of uint8 in .* declares 96000000000 bytes, more than "
                      r"max_decoded_bytes=4294967296; split the dataset")
        assert tracemalloc.get_traced_memory()[1] < 5 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("member, shape, descr, message", [
    ("labels", (N, 10**9), "<f8", r"labels in .* must have shape \(N,\) or \(N, 1\)"),
    ("labels", (10**12,), "<f8", r"labels in .* has 1000000000000 entries but images has 12"),
    ("attr_x", (N,), "<U400000000", r"array 'attr_x' \(12,\) of <U400000000 .* more than max_decoded_bytes"),
])
def test_npz_labels_and_attributes_are_bounded_too(tmp_path, refused, member, shape, descr, message):
    members = {"images": ("|u1", (N, SIZE, SIZE, 3), images().tobytes()), "labels": ("<i8", (N,), LABELS.tobytes())}
    members[member] = (descr, shape, b"")
    refused(forged_npz(tmp_path / "d.npz", members), message)


def test_npz_truncated_member_is_named(tmp_path, refused):
    path = forged_npz(tmp_path / "d.npz", {"images": ("|u1", (N, SIZE, SIZE, 3), images().tobytes()[:-100]),
                                           "labels": ("<i8", (N,), LABELS.tobytes())})
    refused(path, r"array 'images' in .* ends 100 bytes short of the shape its header declares; .*truncated")


def test_npz_images_stream_in_chunks_never_whole(tmp_path, monkeypatch):
    from audit import imagecache

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: pytest.fail("read images whole") if key == "images" else
                        np.lib.format.read_array(self.zip.open(f"{key}.npy")))
    monkeypatch.setattr(imagecache, "ARRAY_CHUNK_BYTES", SIZE * SIZE * 3 * 5)  # 5 images a chunk: 3 chunks
    for compressed in (False, True):
        path = tmp_path / f"d{compressed}.npz"
        (np.savez_compressed if compressed else np.savez)(path, images=images(), labels=LABELS)
        np.testing.assert_array_equal(load_dataset(path, image_size=SIZE).images, images())
    fortran = np.asfortranarray(images())
    np.savez(tmp_path / "f.npz", images=fortran, labels=LABELS)
    np.testing.assert_array_equal(load_dataset(tmp_path / "f.npz", image_size=SIZE).images, images())


def test_h5_unallocated_million_samples_is_refused_fast(tmp_path, refused):
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(1_000_000, 64, 64, 3), dtype="u1", chunks=(1, 64, 64, 3),
                         compression="gzip")
        f.create_dataset("labels", shape=(1_000_000,), dtype="u1", chunks=(1000,), compression="gzip")
    assert path.stat().st_size < 10_000
    start = time.perf_counter()
    refused(path, r"bomb\.h5 holds 1000000 samples, more than max_samples=200000; split the dataset")
    assert time.perf_counter() - start < 1


def test_h5_unallocated_storage_under_the_sample_limit(tmp_path, refused):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(2000, 64, 64, 3), dtype="u1", chunks=(1, 64, 64, 3), compression="gzip")
        f["labels"] = np.array([0, 1] * 1000)
    refused(path, r"dataset 'images' in .* declares 24576000 bytes but stores only 0 \(no stored data at all")


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_compound_and_object_labels_are_refused(tmp_path, refused, fmt):
    compound = np.zeros(N, dtype=[("a", "<i4"), ("b", "<f4")])
    if fmt == "npz":
        path = npz(tmp_path / "d.npz", images=images(), labels=compound)
        refused(path, r"cannot read labels with a compound dtype .*plain integer array of 0 and 1")
        path = npz(tmp_path / "o.npz", images=images(), labels=np.array([{"a": 1}] * N, dtype=object))
        refused(path, r"cannot read labels with an object dtype")
    else:
        path = h5(tmp_path / "d.h5", labels=lambda f, n: (f.__delitem__(n), f.create_dataset(n, data=compound)))
        refused(path, r"cannot read labels with a compound dtype")


def test_pixels_samples_and_decoded_bytes_of_arrays(tmp_path, refused):
    path = npz(tmp_path / "d.npz", images=images(), labels=LABELS)
    refused(path, r"images in .* are 16x16 = 256 pixels each, more than max_pixels=100", max_pixels=100)
    refused(path, r"holds 12 samples, more than max_samples=10", max_samples=10)
    refused(path, r"12 images of 16x16 decode to 9216 bytes, more than max_decoded_bytes=9000",
            max_decoded_bytes=9000)
    with pytest.raises(DatasetError, match="max_expansion must be a finite number >= 1"):
        load_dataset(path, max_expansion=0.5)
    with pytest.raises(DatasetError, match="max_samples must be a positive integer"):
        load_dataset(path, max_samples=0)


# --------------------------------------------------------------------------- zip bombs


def png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(images(1)[0] + seed).save(buf, format="PNG")
    return buf.getvalue()


def class_zip(path: Path, extra: dict[str, bytes] | None = None, n: int = 3) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            z.writestr(f"face/{i}.png", png_bytes(i))
            z.writestr(f"background/{i}.png", png_bytes(100 + i))
        for name, content in (extra or {}).items():
            z.writestr(name, content)
    return path


def test_zip_bomb_entry_is_refused_before_anything_is_unpacked(tmp_path, refused, monkeypatch):
    monkeypatch.setattr(zips_module, "_extract", lambda *a: pytest.fail("unpacked a bomb"))
    path = class_zip(tmp_path / "bomb.zip", {"face/bomb.bmp": bytes(20 << 20)})
    assert path.stat().st_size < 200_000
    refused(path, r"zip entry 'face/bomb.bmp' in .* declares 20971520 bytes but stores only \d+ .*max_expansion=200")


def test_zip_of_many_small_bombs_is_refused_as_a_whole(tmp_path, refused):
    path = class_zip(tmp_path / "bomb.zip", {f"face/b{i}.png": bytes(1 << 20) for i in range(8)})
    refused(path, r"the zip's entries together in .* declares \d+ bytes but stores only")


def test_zip_entry_larger_than_any_image_is_refused(tmp_path, refused):
    path = class_zip(tmp_path / "big.zip", {"face/big.png": np.random.default_rng(0).bytes(1_100_000)})
    refused(path, r"'face/big.png' .* unpacks to 1100000 bytes, more than the \d+ allowed for an image of "
                  r"max_pixels=100", max_pixels=100)


def test_zip_manifest_size_is_bounded(tmp_path, refused, monkeypatch):
    monkeypatch.setattr(zips_module, "MAX_MANIFEST_BYTES", 100)
    path = class_zip(tmp_path / "m.zip", {"manifest.csv": b"path,label\n" + b"face/0.png,1\n" * 20})
    refused(path, r"'manifest.csv' .* unpacks to 271 bytes, more than the 100 allowed for manifest.csv")


@pytest.mark.parametrize("name", ["face/notes.txt", "data/run.sh", "face/0.png.exe"])
def test_zip_entries_other_than_images_and_manifest_are_refused(tmp_path, refused, name):
    path = class_zip(tmp_path / "d.zip", {name: b"hello"})
    refused(path, rf"zip entry '{name}' in .* is neither an image \(.png, .*\) nor manifest.csv; remove it")


def test_zip_junk_is_skipped_and_sample_count_checked_before_unpacking(tmp_path, refused, tmp_dir):
    path = class_zip(tmp_path / "d.zip", {"__MACOSX/face/._0.png": b"junk", "face/.DS_Store": b"junk"})
    assert len(load_dataset(path, image_size=SIZE)) == 6
    assert list(tmp_dir.iterdir()) == []
    refused(path, r"d\.zip holds 6 samples, more than max_samples=5", max_samples=5)


def test_zip_directory_too_large_for_its_entry_count(tmp_path, refused):
    path = class_zip(tmp_path / "d.zip", {f"face/{'x' * 3000}.png": png_bytes()}, n=1)
    refused(path, r"has a zip directory of \d+ bytes for 3 entries, more than 3072", max_zip_entries=3)


# --------------------------------------------------------------------------- attribute values


def with_attr(tmp_path: Path, fmt: str, name: str, values) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        return npz(tmp_path / "d.npz", images=images(), labels=LABELS, **{f"attr_{name}": values})
    if fmt == "h5":
        arr = np.asarray(values)
        data = (lambda f, n: f.create_dataset(n, data=arr.tolist(), dtype=h5py.string_dtype())) \
            if arr.dtype.kind == "U" else arr
        return h5(tmp_path / "d.h5", **{f"attr_{name}": data})
    root = tmp_path / "m"
    (root / "img").mkdir(parents=True)
    for i, img in enumerate(images()):
        Image.fromarray(img).save(root / "img" / f"{i}.png")
    pd.DataFrame({"path": [f"img/{i}.png" for i in range(N)], "label": LABELS, name: values}).to_csv(
        root / "manifest.csv", index=False)
    return root


FORMATS = ["npz", "h5", "manifest"]
ROW = {"npz": "index 5", "h5": "index 5", "manifest": "line 7"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_attribute_is_missing_and_survives_the_cache(tmp_path, fmt):
    values = np.arange(N, dtype=np.float64)
    values[3] = np.nan
    path = with_attr(tmp_path, fmt, "score", values)
    for _ in range(2):  # decoded, then from the cache
        ds = load_dataset(path, image_size=SIZE, cache_dir=tmp_path / "cache")
        assert pd.isna(ds.attributes.loc[3, "score"]) and ds.attributes["score"].notna().sum() == N - 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_infinite_attribute_is_refused(tmp_path, refused, fmt):
    values = np.arange(N, dtype=np.float64)
    values[5] = -np.inf
    refused(with_attr(tmp_path, fmt, "score", values), rf"score.* has an infinite value \(-inf\) at {ROW[fmt]}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_nul_in_attribute_value_is_refused(tmp_path, refused, fmt):
    values = np.array(["a"] * N, dtype=object)
    values[5] = "b\x00c"
    if fmt == "h5":  # HDF5 variable-length strings end at NUL: fixed-length bytes can smuggle one in
        path = h5(tmp_path / "d.h5", attr_site=np.array([v.encode() for v in values], dtype="S4"))
    else:
        path = with_attr(tmp_path, fmt, "site", values.astype(str))
    refused(path, rf"site.* has a NUL character \(\\x00\) at {ROW[fmt]}: 'b\\x00c'; remove it")


@pytest.mark.parametrize("fmt", FORMATS)
def test_overlong_attribute_value_and_name_are_refused(tmp_path, refused, fmt):
    values = np.array(["a"] * N, dtype=object)
    values[5] = "x" * 2000
    refused(with_attr(tmp_path, fmt, "site", values.astype(str)),
            rf"site.* has a value of 2000 characters at {ROW[fmt]}, more than 1024")
    refused(with_attr(tmp_path / "n", fmt, "n" * 300, np.arange(N)),
            r"attribute name 'nnnn.*\.\.\. in .* is 300 characters long, more than 256; shorten it")


@pytest.mark.parametrize("fmt, data", [
    ("npz", np.array([b"ok"] * 5 + [b"\xff\xfe"] + [b"ok"] * 6)),
    ("h5", np.array([b"ok"] * 5 + [b"\xff\xfe"] + [b"ok"] * 6)),
    ("h5", lambda f, n: f.create_dataset(n, data=np.array([b"ok"] * 5 + [b"\xff"] + [b"ok"] * 6, dtype=object),
                                         dtype=h5py.string_dtype("utf-8"))),
])
def test_attribute_bytes_that_are_not_utf8_are_refused(tmp_path, refused, fmt, data):
    path = npz(tmp_path / "d.npz", images=images(), labels=LABELS, attr_site=data) if fmt == "npz" \
        else h5(tmp_path / "d.h5", attr_site=data)
    refused(path, r"attr_site in .* is not UTF-8 text at index 5 \(invalid start byte at byte 0\); store the values")


def test_attribute_names_with_nul_or_control_characters_are_refused(tmp_path, refused):
    root = with_attr(tmp_path, "manifest", "site", np.array(["a"] * N))
    text = (root / "manifest.csv").read_text().replace("site", "si\x00te", 1)
    (root / "manifest.csv").write_text(text)
    refused(root, r"attribute name 'si\\x00te' in manifest.csv .* contains a NUL character")
    refused(h5(tmp_path / "d.h5", **{"attr_a\nb": np.arange(N)}), r"attribute name 'a\\nb' .* control character")


@pytest.mark.parametrize("fmt", FORMATS)
def test_attribute_names_with_quotes_survive(tmp_path, fmt):
    ds = load_dataset(with_attr(tmp_path, fmt, 'a"b', np.array(["x", "y"] * (N // 2))), image_size=SIZE)
    assert list(ds.attributes.columns) == ['a"b'] and ds.attributes['a"b'].tolist() == ["x", "y"] * (N // 2)


# --------------------------------------------------------------------------- the CLI: exit 2, one line


def run_cli(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    _, err = capsys.readouterr()
    return code, err


@pytest.mark.parametrize("case", ["external-storage", "external-link", "soft-link", "virtual", "npz-bomb", "zip-bomb",
                                  "nul"])
def test_cli_refuses_hostile_files_in_one_line(capsys, tmp_path, case):
    if case == "external-storage":
        raw = tmp_path / "secret.bin"
        raw.write_bytes(images().tobytes())
        data = h5(tmp_path / "d.h5")
        with h5py.File(data, "a") as f:
            external_storage(raw, N)(f, "images")
        match = "keeps its data in external file(s)"
    elif case == "external-link":
        other = valid_h5(tmp_path / "other.h5")
        data = h5(tmp_path / "d.h5", labels=replace_with(lambda: h5py.ExternalLink(str(other), "labels")))
        match = "is an external link to another file"
    elif case == "soft-link":
        data = h5(tmp_path / "d.h5", real=LABELS, labels=replace_with(lambda: h5py.SoftLink("/real")))
        match = "is a soft link"
    elif case == "virtual":
        other = valid_h5(tmp_path / "other.h5")
        data = h5(tmp_path / "d.h5", images=virtual(other, "images", (N, SIZE, SIZE, 3), np.uint8))
        match = "is a virtual dataset"
    elif case == "npz-bomb":
        data, match = zeros_npz(tmp_path / "d.npz", 2000), "a decompression bomb"
    elif case == "zip-bomb":
        data, match = class_zip(tmp_path / "d.zip", {"face/bomb.png": bytes(20 << 20)}), "a decompression bomb"
    else:
        data = npz(tmp_path / "d.npz", images=images(), labels=LABELS, attr_x=np.array(["a\x00b"] * N))
        match = "has a NUL character"
    for argv in (["train", data, "--out", tmp_path / "m", "--image-size", "16", "--epochs", "1", "--no-progress"],
                 ["audit", data, "--model", tmp_path / "none", "--out", tmp_path / "a", "--image-size", "16"]):
        code, err = run_cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("debias: error:"), err
        assert match in lines[0] and "Traceback" not in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "a").exists()
