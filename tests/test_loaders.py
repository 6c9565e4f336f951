"""Every dataset format loads to the same ImageDataset; every bad input fails with a message naming it."""
from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit import imagecache
from audit.errors import DatasetError
from audit.loaders import load_dataset

N, SIZE = 12, 16


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.array([1, 0] * (N // 2), dtype=np.int64)
    attrs = {"group": np.array(["a", "b", "c"] * (N // 3)), "age": np.arange(N, dtype=np.int64)}
    return images, labels, attrs


# --------------------------------------------------------------------------- writers


def write_npz(path: Path, images, labels, attrs) -> Path:
    np.savez(path, images=images, labels=labels, **{f"attr_{k}": v for k, v in attrs.items()})
    return path


def write_h5(path: Path, images, labels, attrs) -> Path:
    with h5py.File(path, "w", track_order=True) as f:  # attribute columns keep this order
        f["images"] = images
        f["labels"] = labels.reshape(-1, 1).astype(np.float32)  # the lab's train_face.h5 layout
        for k, v in attrs.items():
            if v.dtype.kind == "U":
                f.create_dataset(f"attr_{k}", data=v.tolist(), dtype=h5py.string_dtype())
            else:
                f[f"attr_{k}"] = v
    return path


def save_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def write_manifest_folder(root: Path, images, labels, attrs) -> Path:
    rows = []
    for i, img in enumerate(images):
        save_png(root / "imgs" / f"{i:03d}.png", img)
        rows.append({"path": f"imgs/{i:03d}.png", "label": int(labels[i]), **{k: v[i] for k, v in attrs.items()}})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def write_class_folders(root: Path, images, labels, pos: str = "faces", neg: str = "other") -> Path:
    for i, img in enumerate(images):
        save_png(root / (pos if labels[i] == 1 else neg) / f"{i:03d}.png", img)
    return root


def zip_folder(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, prefix + f.relative_to(src).as_posix())
    return dest


def class_folder_order(labels: np.ndarray, pos: str = "faces", neg: str = "other") -> np.ndarray:
    """Input order of a class-folder layout: folders alphabetically, files by name."""
    folder = np.where(labels == 1, pos, neg)
    return np.array(sorted(range(len(labels)), key=lambda i: (folder[i], i)))


def assert_same(ds, images, labels, attrs=None) -> None:
    np.testing.assert_array_equal(np.asarray(ds.images), images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64 and ds.images.dtype == np.uint8
    if attrs is not None:
        expected = pd.DataFrame({k: pd.Series(v) for k, v in attrs.items()})
        pd.testing.assert_frame_equal(ds.attributes, expected, check_dtype=False)
        assert ds.attributes["age"].dtype == np.int64


# --------------------------------------------------------------------------- every format, same dataset


@pytest.mark.parametrize("fmt", ["npz", "h5", "manifest", "zip-manifest", "zip-manifest-nested"])
def test_formats_with_labels_load_the_same_dataset(tmp_path, arrays, fmt):
    images, labels, attrs = arrays
    if fmt == "npz":
        path = write_npz(tmp_path / "d.npz", *arrays)
    elif fmt == "h5":
        path = write_h5(tmp_path / "d.h5", *arrays)
    else:
        folder = write_manifest_folder(tmp_path / "data", *arrays)
        prefix = "data/" if "nested" in fmt else ""
        path = folder if fmt == "manifest" else zip_folder(folder, tmp_path / "d.zip", prefix)
    ds = load_dataset(path, image_size=SIZE)
    assert_same(ds, images, labels, attrs)
    assert ds.source == str(path)


@pytest.mark.parametrize("fmt", ["folder", "zip", "zip-nested"])
def test_class_folders_load_with_positive_and_auto_pick(tmp_path, arrays, fmt):
    images, labels, _ = arrays
    folder = write_class_folders(tmp_path / "data", images, labels)
    path = folder if fmt == "folder" else zip_folder(folder, tmp_path / "d.zip", "top/" if "nested" in fmt else "")
    order = class_folder_order(labels)
    auto = load_dataset(path, image_size=SIZE)  # "faces" is a positive name
    assert_same(auto, images[order], labels[order])
    assert list(auto.attributes.columns) == []
    flipped = load_dataset(path, image_size=SIZE, positive="other")
    assert_same(flipped, images[order], 1 - labels[order])


def test_class_folders_negative_name_and_ambiguous_names(tmp_path, arrays):
    images, labels, _ = arrays
    neg_named = write_class_folders(tmp_path / "a", images, labels, pos="cats", neg="negative")
    assert load_dataset(neg_named, image_size=SIZE).class_counts() == {0: N // 2, 1: N // 2}
    ambiguous = write_class_folders(tmp_path / "b", images, labels, pos="cats", neg="dogs")
    with pytest.raises(DatasetError, match=r"folders: cats, dogs.*pass --positive NAME"):
        load_dataset(ambiguous)
    with pytest.raises(DatasetError, match=r"'birds' is not a class folder.*cats, dogs"):
        load_dataset(ambiguous, positive="birds")


def test_grayscale_becomes_rgb(tmp_path, arrays):
    images, labels, _ = arrays
    gray = images[..., 0]
    npz = load_dataset(write_npz(tmp_path / "g.npz", gray, labels, {}), image_size=SIZE)
    chan = load_dataset(write_npz(tmp_path / "g1.npz", gray[..., None], labels, {}), image_size=SIZE)
    folder = tmp_path / "gray"
    for i, img in enumerate(gray):
        save_png(folder / ("faces" if labels[i] else "other") / f"{i:03d}.png", img)  # mode "L" PNGs
    from_pngs = load_dataset(folder, image_size=SIZE)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    assert_same(npz, rgb, labels)
    assert_same(chan, rgb, labels)
    order = class_folder_order(labels)
    assert_same(from_pngs, rgb[order], labels[order])


def test_resize_and_centre_crop_agree_across_formats(tmp_path, arrays):
    images, labels, _ = arrays
    wide = np.concatenate([images, images[:, :, :4]], axis=2)  # 16 x 20: crop 2 columns each side
    from_npz = load_dataset(write_npz(tmp_path / "w.npz", wide, labels, {}), image_size=8)
    from_pngs = load_dataset(write_manifest_folder(tmp_path / "w", wide, labels, {}), image_size=8)
    expected = np.stack(
        [np.asarray(Image.fromarray(img[:, 2:18]).resize((8, 8), Image.Resampling.BILINEAR)) for img in wide]
    )
    assert_same(from_npz, expected, labels)
    assert_same(from_pngs, expected, labels)


def test_h5_float_labels_must_be_exactly_0_or_1(tmp_path, arrays):
    images, _, _ = arrays
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["labels"] = np.full((N, 1), 0.5, dtype=np.float32)
    with pytest.raises(DatasetError, match=r"must be 0 or 1.*found \[0\.5\]"):
        load_dataset(path)


def test_manifest_keeps_attribute_columns_with_missing_values(tmp_path, arrays):
    images, labels, attrs = arrays
    root = write_manifest_folder(tmp_path / "m", images, labels, attrs)
    table = pd.read_csv(root / "manifest.csv")
    table.loc[3, "group"] = None
    table.to_csv(root / "manifest.csv", index=False)
    ds = load_dataset(root, image_size=SIZE)
    assert list(ds.attributes.columns) == ["group", "age"]
    assert pd.isna(ds.attributes.loc[3, "group"]) and ds.attributes.loc[4, "group"] == "b"
    cached = load_dataset(root, image_size=SIZE, cache_dir=tmp_path / "c")
    again = load_dataset(root, image_size=SIZE, cache_dir=tmp_path / "c")
    pd.testing.assert_frame_equal(again.attributes, cached.attributes)
    pd.testing.assert_frame_equal(again.attributes, ds.attributes)


# --------------------------------------------------------------------------- cache


def count_decodes(monkeypatch) -> list[int]:
    calls = [0]
    original = imagecache.decode_image

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(imagecache, "decode_image", counting)
    return calls


def test_cache_hit_skips_decoding_and_memory_maps(tmp_path, arrays, monkeypatch):
    images, labels, _ = arrays
    folder = write_class_folders(tmp_path / "data", images, labels)
    calls = count_decodes(monkeypatch)
    first = load_dataset(folder, image_size=SIZE, cache_dir=tmp_path / "cache")
    assert calls[0] == N
    second = load_dataset(folder, image_size=SIZE, cache_dir=tmp_path / "cache")
    assert calls[0] == N  # no decoding on a hit
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    assert_same(second, np.asarray(first.images), first.labels)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".npy", ".npz"]  # no temp files left

    load_dataset(folder, image_size=8, cache_dir=tmp_path / "cache")  # other size: other entry
    assert calls[0] == 2 * N
    save_png(folder / "faces" / "new.png", images[0])  # changed folder: other entry
    assert len(load_dataset(folder, image_size=SIZE, cache_dir=tmp_path / "cache")) == N + 1
    assert calls[0] == 3 * N + 1


def test_cache_dir_from_environment(tmp_path, arrays, monkeypatch):
    path = write_npz(tmp_path / "d.npz", *arrays)
    monkeypatch.setenv(imagecache.CACHE_ENV, str(tmp_path / "envcache"))
    load_dataset(path, image_size=SIZE)
    assert len(list((tmp_path / "envcache").glob("*.images.npy"))) == 1
    assert isinstance(load_dataset(path, image_size=SIZE).images, np.memmap)


def test_failed_load_leaves_no_cache_file(tmp_path, arrays):
    images, labels, _ = arrays
    folder = write_class_folders(tmp_path / "data", images, labels)
    (folder / "other" / "zzz.png").write_bytes(b"not a png")  # decoded last
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="other/zzz.png"):
        load_dataset(folder, image_size=SIZE, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_large_dataset_without_cache_uses_unlinked_temp_memmap(tmp_path, arrays, monkeypatch):
    images, labels, _ = arrays
    folder = zip_folder(write_class_folders(tmp_path / "data", images, labels), tmp_path / "d.zip")
    monkeypatch.setattr(imagecache, "IN_MEMORY_LIMIT_BYTES", 0)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    ds = load_dataset(folder, image_size=SIZE)
    assert isinstance(ds.images, np.memmap)
    order = class_folder_order(labels)
    assert_same(ds, images[order], labels[order])
    assert list(tmp.iterdir()) == []  # the zip temp dir and the image file are both gone


# --------------------------------------------------------------------------- errors


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder: .*nope.npz"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"unknown dataset format .*data\.txt.*expected \.npz, \.h5, \.hdf5, \.zip"):
        load_dataset(tmp_path / "data.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no manifest.csv and no class sub-folders"):
        load_dataset(tmp_path / "empty")


def test_npz_missing_arrays(tmp_path, arrays):
    images, labels, _ = arrays
    np.savez(tmp_path / "a.npz", images=images)
    with pytest.raises(DatasetError, match=r"no 'labels' array \(found 'images'\)"):
        load_dataset(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", labels=labels)
    with pytest.raises(DatasetError, match="no 'images' array"):
        load_dataset(tmp_path / "b.npz")


def test_labels_outside_0_1_are_named(tmp_path, arrays):
    images, labels, _ = arrays
    bad = labels.copy()
    bad[[2, 5]] = [2, -1]
    with pytest.raises(DatasetError, match=r"found \[2, -1\] in 2 labels \(first at index 2\)"):
        load_dataset(write_npz(tmp_path / "d.npz", images, bad, {}))


def test_npz_object_arrays_are_refused_not_unpickled(tmp_path, arrays):
    images, labels, _ = arrays
    np.savez(tmp_path / "d.npz", images=images, labels=labels, attr_x=np.array(["a", 1] * (N // 2), dtype=object))
    with pytest.raises(DatasetError, match=r"'attr_x' .* without pickle.*dtype=str"):
        load_dataset(tmp_path / "d.npz")


def test_length_mismatch_names_array_and_lengths(tmp_path, arrays):
    images, labels, attrs = arrays
    with pytest.raises(DatasetError, match="labels .* has 11 entries but images has 12"):
        load_dataset(write_npz(tmp_path / "a.npz", images, labels[:-1], {}))
    with pytest.raises(DatasetError, match="attr_group .* has 10 entries but images has 12"):
        load_dataset(write_npz(tmp_path / "b.npz", images, labels, {"group": attrs["group"][:10]}))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda im: im.astype(np.float32) / 255, r"float32 \(max 1\).*convert them to uint8.*\* 255"),
        (lambda im: im.astype(np.float64), r"float64 \(max 2\d\d\).*convert them to uint8"),
        (lambda im: im.astype(np.int64), "int64; convert them to uint8"),
        (lambda im: im[:, :, :, 0].reshape(N, -1), r"must be \(N, H, W, 3\).*got shape \(12, 256\)"),
        (lambda im: np.concatenate([im, im[..., :1]], axis=-1), r"drop the alpha channel"),
        (lambda im: im.transpose(0, 3, 1, 2), "channels-first"),
    ],
)
def test_bad_image_arrays(tmp_path, arrays, make, message):
    images, labels, _ = arrays
    with pytest.raises(DatasetError, match=message):
        load_dataset(write_npz(tmp_path / "d.npz", make(images), labels, {}))


def test_class_with_no_samples(tmp_path, arrays):
    images, labels, _ = arrays
    folder = write_class_folders(tmp_path / "data", images[labels == 0], labels[labels == 0])
    (folder / "faces").mkdir()
    with pytest.raises(DatasetError, match=r"no positive \(label 1\) samples"):
        load_dataset(folder)
    with pytest.raises(DatasetError, match=r"no negative \(label 0\) samples"):
        load_dataset(write_npz(tmp_path / "d.npz", images, np.ones(N, dtype=np.int64), {}))


def test_corrupt_and_non_image_files_are_named(tmp_path, arrays):
    images, labels, _ = arrays
    folder = write_class_folders(tmp_path / "a", images, labels)
    (folder / "faces" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="cannot read image faces/bad.png"):
        load_dataset(folder)
    folder = write_class_folders(tmp_path / "b", images, labels)
    (folder / "faces" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="faces/notes.txt in .* is not an image"):
        load_dataset(folder)
    (folder / "faces" / "notes.txt").unlink()
    (folder / "faces" / ".DS_Store").write_bytes(b"junk")  # OS junk is ignored
    assert len(load_dataset(folder, image_size=SIZE)) == N


def test_too_many_pixels_checked_before_decoding(tmp_path, arrays, monkeypatch):
    folder = write_class_folders(tmp_path / "data", arrays[0], arrays[1])
    monkeypatch.setattr(imagecache, "_pil_to_array", lambda img: pytest.fail("decoded an oversized image"))
    with pytest.raises(DatasetError, match=r"faces/000.png .* 16x16 = 256 pixels, more than max_pixels=100"):
        load_dataset(folder, max_pixels=100)


def test_manifest_path_errors(tmp_path, arrays):
    images, labels, attrs = arrays
    root = write_manifest_folder(tmp_path / "m", images, labels, attrs)
    table = pd.read_csv(root / "manifest.csv")

    def fails_with(edit, message):
        edit(table.copy()).to_csv(root / "manifest.csv", index=False)
        with pytest.raises(DatasetError, match=message):
            load_dataset(root)

    fails_with(lambda t: t.assign(path=t["path"].where(t.index != 1, "/etc/passwd.png")),
               r"line 3 .*'/etc/passwd.png' is absolute")
    (tmp_path / "outside.png").write_bytes((root / "imgs" / "000.png").read_bytes())
    fails_with(lambda t: t.assign(path=t["path"].where(t.index != 0, "../outside.png")),
               r"line 2 .*'\.\./outside\.png' points outside")
    fails_with(lambda t: t.assign(path=t["path"].where(t.index != 4, "imgs/gone.png")),
               r"1 file\(s\) that do not exist: imgs/gone.png \(line 6\)")
    fails_with(lambda t: t.assign(path=t["path"].where(t.index != 0, "manifest.csv")),
               "'manifest.csv' is not an image file")
    fails_with(lambda t: t.drop(columns=["label"]), r"lacks column\(s\) label")
    fails_with(lambda t: t.assign(label=t["label"].where(t.index != 7, 3)), r"found \[3\] .*line 9")
    fails_with(lambda t: t.rename(columns={"age": "index"}), "'index' .* clashes")


def test_positive_only_for_class_folders(tmp_path, arrays):
    with pytest.raises(DatasetError, match="only applies to a folder with one sub-folder per class"):
        load_dataset(write_npz(tmp_path / "d.npz", *arrays), positive="faces")
    with pytest.raises(DatasetError, match="only applies .* has manifest.csv"):
        load_dataset(write_manifest_folder(tmp_path / "m", *arrays), positive="faces")


def test_class_folder_count(tmp_path, arrays):
    folder = write_class_folders(tmp_path / "data", arrays[0], arrays[1])
    save_png(folder / "third" / "x.png", arrays[0][0])
    with pytest.raises(DatasetError, match="exactly two class sub-folders .* found 3: faces, other, third"):
        load_dataset(folder)


def _zip_with(tmp_path: Path, arrays, name: str, info_edit=None) -> Path:
    folder = write_class_folders(tmp_path / "data", arrays[0], arrays[1])
    path = zip_folder(folder, tmp_path / "d.zip")
    with zipfile.ZipFile(path, "a") as z:
        info = zipfile.ZipInfo(name)
        if info_edit:
            info_edit(info)
        z.writestr(info, (folder / "faces" / "000.png").read_bytes())
    return path


def make_symlink_entry(info: zipfile.ZipInfo) -> None:
    info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip tools on Unix store a symlink


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("../evil.png", None, r"zip entry '\.\./evil\.png' .* uses '\.\.'"),
        ("faces/../../evil.png", None, r"'faces/\.\./\.\./evil\.png' .* uses '\.\.'"),
        ("/abs/evil.png", None, r"zip entry '/abs/evil\.png' .* absolute path"),
        ("C:\\evil.png", None, "absolute path"),
        ("faces/link.png", make_symlink_entry, "'faces/link.png' .* is a symlink"),
    ],
)
def test_unsafe_zip_entries_are_rejected(tmp_path, arrays, name, edit, message):
    path = _zip_with(tmp_path, arrays, name, edit)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)
    assert not (tmp_path / "evil.png").exists()


def test_zip_limits(tmp_path, arrays):
    path = zip_folder(write_class_folders(tmp_path / "data", *arrays[:2]), tmp_path / "d.zip")
    with pytest.raises(DatasetError, match="12 entries, more than the limit of 5"):
        load_dataset(path, max_zip_entries=5)
    with pytest.raises(DatasetError, match=r"unpacks to \d+ bytes, more than the limit of 100"):
        load_dataset(path, max_zip_bytes=100)
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DatasetError, match="cannot open .*broken.zip as a zip file"):
        load_dataset(tmp_path / "broken.zip")


def test_bad_arguments(tmp_path, arrays):
    path = write_npz(tmp_path / "d.npz", *arrays)
    with pytest.raises(DatasetError, match="image_size must be a positive integer, got 0"):
        load_dataset(path, image_size=0)
    with pytest.raises(DatasetError, match="max_pixels must be a positive integer"):
        load_dataset(path, max_pixels=-1)


def _mapped_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile"))


def test_mapped_pages_are_let_go_of_after_the_budget(tmp_path):
    from audit.imagecache import MappedPages
    array = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(4096, 32, 32, 3))
    array[:] = 7
    array.flush()
    del array
    images = np.load(tmp_path / "x.npy", mmap_mode="r")
    pages = MappedPages(images, budget_bytes=2 * 32 * 32 * 3)
    assert int(images.sum()) == 7 * images.size          # every page mapped: 12 MiB
    mapped = _mapped_kib()
    pages.read(1)                                         # under the budget: kept
    assert _mapped_kib() >= mapped - 1024
    pages.read(1)                                         # at the budget: let go of
    assert _mapped_kib() <= mapped - 8 * 1024
    assert int(images.sum()) == 7 * images.size          # and read again from the page cache
    assert MappedPages(np.zeros((3, 4, 4, 3), np.uint8))._mapped is None   # in RAM: nothing to let go of


def test_scattered_rows_of_a_cache_are_read_without_mapping_them(tmp_path):
    from audit.imagecache import RowReader
    rng = np.random.default_rng(0)
    array = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(4096, 32, 32, 3))
    array[:] = rng.integers(0, 256, array.shape, dtype=np.uint8)
    array.flush()
    del array
    images = np.load(tmp_path / "x.npy", mmap_mode="r")
    mapped = _mapped_kib()
    idx = rng.choice(len(images), 500, replace=False)
    rows = RowReader(images).take(idx)
    assert _mapped_kib() <= mapped + 256                    # 1.5 MiB read, none of it mapped
    assert (rows == images[idx]).all() and rows.flags.writeable
    in_ram = np.asarray(images[:10])
    assert (RowReader(in_ram).take(np.array([3, 1])) == in_ram[[3, 1]]).all()   # any other array: indexed
    view = images[5:]                                       # not the file's own array: indexed too
    assert (RowReader(view).take(np.array([0, 2])) == images[[5, 7]]).all()
