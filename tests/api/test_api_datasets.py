"""Dataset uploads: every accepted format, reading them back, deleting them, and every way an upload is refused."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from api.tables import Audit, AuditScore, Sample, TrainedModel

from .conftest import TRAIN_FAST, rng_images, run_jobs, upload

# --------------------------------------------------------------------------- building uploads


def png(width: int = 16, height: int = 16, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def zip_bytes(entries: dict[str | zipfile.ZipInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def class_folder_zip(n_face: int = 3, n_background: int = 5, size: int = 16) -> bytes:
    entries = {f"face/{i}.png": png(size, size, seed=i) for i in range(n_face)}
    entries |= {f"background/{i}.png": png(size, size, seed=100 + i) for i in range(n_background)}
    return zip_bytes(entries)


def manifest_zip() -> bytes:
    """data/manifest.csv with a `site` attribute and one row listed twice; 40x48 images (cropped to square)."""
    rows = [(f"img/p{i}.png", 1, "ab"[i % 2]) for i in range(4)] + [(f"img/n{i}.png", 0, "a") for i in range(3)]
    rows.append(rows[0])
    manifest = "path,label,site\n" + "".join(f"{p},{label},{site}\n" for p, label, site in rows)
    entries = {"data/manifest.csv": manifest.encode()}
    entries |= {f"data/{p}": png(40, 48, seed=i) for i, (p, _, _) in enumerate(rows)}
    return zip_bytes(entries)


def h5_bytes(tmp_path) -> bytes:
    import h5py

    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=rng_images(10))
        f.create_dataset("labels", data=np.array([1.0] * 6 + [0.0] * 4))  # the lab stores 0./1. floats
        f.create_dataset("attr_site", data=np.array(["a", "b"] * 5, dtype="S"))
        f.create_dataset("meta", data=np.arange(3))
    return path.read_bytes()


# --------------------------------------------------------------------------- accepted uploads


FORMATS = {
    # id: (build(tmp_path, tiny_npz_bytes) -> bytes, filename, image_size, file_format, counts, attributes,
    #      a fragment every problem must contain (None: no problems))
    "npz": (lambda tmp, tiny: tiny, "tiny.npz", 16, "npz", {"positive": 24, "negative": 24},
            {"skin_tone", "hair", "glasses", "pose", "lighting", "background", "kind"}, None),
    "zip-manifest": (lambda tmp, tiny: manifest_zip(), "sites.zip", 32, "zip", {"positive": 5, "negative": 3},
                     {"site": {"a": 6, "b": 2}}, "more than once"),
    "zip-class-folders": (lambda tmp, tiny: class_folder_zip(), "folders.zip", 16, "zip",
                          {"positive": 3, "negative": 5}, {}, None),
    "h5": (lambda tmp, tiny: h5_bytes(tmp), "faces.h5", 16, "h5", {"positive": 6, "negative": 4},
           {"site": {"a": 5, "b": 5}}, "ignored datasets meta in faces.h5"),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_upload_each_format(client, alice, settings, tmp_path, tiny_npz_bytes, fmt):
    build, filename, size, file_format, counts, attributes, problem = FORMATS[fmt]
    content = build(tmp_path, tiny_npz_bytes)
    r = upload(client, alice, content, filename=filename, image_size=size)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["counts"] == counts and ds["n_samples"] == sum(counts.values())
    assert ds["image_size"] == size and ds["file_format"] == file_format
    assert ds["name"] == filename and ds["upload_bytes"] == len(content)
    if isinstance(attributes, set):
        assert set(ds["attributes"]) == attributes
    else:
        assert ds["attributes"] == attributes
    if problem is None:
        assert ds["problems"] == []
    else:
        assert ds["problems"] and all(problem in p for p in ds["problems"]), ds["problems"]
        # Problems name the file as uploaded, never where the server keeps it.
        assert all(str(settings.data_dir) not in p for p in ds["problems"])

    assert client.get(f"/v1/datasets/{ds['id']}", headers=alice).json() == ds
    assert [d["id"] for d in client.get("/v1/datasets", headers=alice).json()] == [ds["id"]]
    for index in (0, ds["n_samples"] - 1):
        img = client.get(f"/v1/datasets/{ds['id']}/samples/{index}/image", headers=alice)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(img.content))
        assert picture.format == "PNG" and picture.size == (size, size) and picture.mode == "RGB"


def test_sample_image_is_the_uploaded_picture(client, alice):
    images = rng_images(4)
    r = upload(client, alice, npz_bytes(images=images, labels=np.array([1, 0, 1, 0])))
    assert r.status_code == 201, r.text
    img = client.get(f"/v1/datasets/{r.json()['id']}/samples/2/image", headers=alice)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(img.content))), images[2])


def test_sample_index_out_of_range(client, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()
    for index in (48, 1000):
        r = client.get(f"/v1/datasets/{ds['id']}/samples/{index}/image", headers=alice)
        assert r.status_code == 404, (index, r.text)
        assert f"no sample {index}" in r.json()["detail"] and "it has 48" in r.json()["detail"]
    r = client.get(f"/v1/datasets/{ds['id']}/samples/-1/image", headers=alice)
    assert r.status_code == 422 and "index" in r.json()["detail"]


def count(app, table, *where) -> int:
    with app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(table).where(*where))


def test_delete_removes_files_and_everything_derived(client, app, alice, settings, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()
    keep = upload(client, alice, tiny_npz_bytes, name="kept").json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    assert r.status_code == 202, r.text
    audit_id, model_id = r.json()["resource"]["audit_id"], r.json()["resource"]["model_id"]
    assert run_jobs(app) == 1
    assert client.get(f"/v1/audits/{audit_id}", headers=alice).json()["status"] == "ready"
    folders = [settings.data_dir / "datasets" / str(ds["id"]), settings.data_dir / "audits" / str(audit_id),
               settings.data_dir / "models" / str(model_id)]
    assert all(f.is_dir() for f in folders)
    assert count(app, AuditScore, AuditScore.audit_id == audit_id) == 48

    r = client.delete(f"/v1/datasets/{ds['id']}", headers=alice)
    assert r.status_code == 204 and r.content == b""
    for url in (f"/v1/datasets/{ds['id']}", f"/v1/datasets/{ds['id']}/samples/0/image",
                f"/v1/audits/{audit_id}", f"/v1/models/{model_id}"):
        assert client.get(url, headers=alice).status_code == 404, url
    assert client.delete(f"/v1/datasets/{ds['id']}", headers=alice).status_code == 404
    assert not any(f.exists() for f in folders)
    assert count(app, Sample, Sample.dataset_id == ds["id"]) == 0
    assert count(app, AuditScore, AuditScore.audit_id == audit_id) == 0
    assert count(app, Audit, Audit.id == audit_id) == 0 and count(app, TrainedModel, TrainedModel.id == model_id) == 0
    assert client.get("/v1/audits", headers=alice).json() == []
    assert client.get("/v1/models", headers=alice).json() == []

    # The other dataset is untouched.
    assert [d["id"] for d in client.get("/v1/datasets", headers=alice).json()] == [keep["id"]]
    assert (settings.data_dir / "datasets" / str(keep["id"])).is_dir()
    assert count(app, Sample, Sample.dataset_id == keep["id"]) == 48
    assert client.get(f"/v1/datasets/{keep['id']}/samples/0/image", headers=alice).status_code == 200


def test_unknown_dataset_is_404(client, alice):
    for method, url in (("GET", "/v1/datasets/999"), ("DELETE", "/v1/datasets/999"),
                        ("GET", "/v1/datasets/999/samples/0/image")):
        r = client.request(method, url, headers=alice)
        assert r.status_code == 404 and r.json() == {"detail": "dataset 999 not found"}, (method, url, r.text)


# --------------------------------------------------------------------------- refused uploads


def assert_refused(r, status: int, fragment: str, client, headers, settings) -> None:
    """The status and a message naming the problem (no server paths), and nothing was kept."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert fragment in body["detail"], body["detail"]
    assert str(settings.data_dir) not in body["detail"], body["detail"]
    assert client.get("/v1/datasets", headers=headers).json() == []
    for folder in ("datasets", "uploads"):
        path = settings.data_dir / folder
        assert not path.exists() or list(path.iterdir()) == [], (folder, list(path.iterdir()))


def symlink_zip() -> bytes:
    link = zipfile.ZipInfo("face/link.png")
    link.external_attr = 0o120777 << 16
    return zip_bytes({"face/0.png": png(), link: b"/etc/passwd", "background/0.png": png(seed=1)})


BAD_FILES = {
    # id: (content, filename, fragment of the message)
    "not-a-dataset-file": (b"just some notes", "notes.txt", "notes.txt is not a dataset file"),
    "npz-that-is-not-npz": (np.random.default_rng(0).bytes(2048), "fake.npz", "cannot read fake.npz as .npz"),
    "npz-without-labels": (npz_bytes(images=rng_images(4)), "nolabels.npz", "has no 'labels' array"),
    "labels-not-binary": (npz_bytes(images=rng_images(4), labels=np.array([0, 1, 2, 1])), "labels.npz",
                          "must be 0 or 1 (1 = positive), found [2]"),
    "corrupt-image-in-zip": (zip_bytes({"face/0.png": png(), "face/1.png": b"not a png at all",
                                        "background/0.png": png(seed=1)}), "broken.zip",
                             "cannot read image face/1.png"),
    "zip-entry-escapes": (zip_bytes({"face/0.png": png(), "../evil.png": png(seed=2),
                                     "background/0.png": png(seed=1)}), "escape.zip",
                          "'../evil.png' in escape.zip uses '..' to escape"),
    "zip-symlink": (symlink_zip(), "link.zip", "'face/link.png' in link.zip is a symlink"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_upload_is_refused_and_nothing_is_kept(client, alice, settings, case):
    content, filename, fragment = BAD_FILES[case]
    r = upload(client, alice, content, filename=filename)
    # Not a dataset format at all: 415 Unsupported Media Type; a dataset file that is wrong inside: 422.
    assert_refused(r, 415 if case == "not-a-dataset-file" else 422, fragment, client, alice, settings)


LIMITS = {
    # id: (settings to lower, content builder, message fragment)
    "zip-entry-count": ({"max_zip_entries": 5}, lambda: class_folder_zip(3, 3),
                        "has 6 entries, more than the limit of 5"),
    "zip-unpacked-size": ({"max_zip_bytes": 10_000},
                          lambda: zip_bytes({"face/0.png": png(), "face/noise.png": png(128, 128),
                                             "background/0.png": png(seed=1)}),
                          "more than the limit of 10000"),
    "image-pixels": ({"max_image_pixels": 64 * 64},
                     lambda: zip_bytes({"face/0.png": png(), "face/big.png": png(65, 64, seed=3),
                                        "background/0.png": png(seed=1)}),
                     "image face/big.png in "),
}


@pytest.mark.parametrize("case", LIMITS)
def test_bombs_are_refused_by_the_configured_limits(client, app, alice, settings, case):
    limits, build, fragment = LIMITS[case]
    content = build()
    fine = upload(client, alice, content, filename="fine.zip")  # within the default limits: a good upload
    assert fine.status_code == 201, fine.text
    assert client.delete(f"/v1/datasets/{fine.json()['id']}", headers=alice).status_code == 204

    app.state.settings = settings.model_copy(update=limits)
    r = upload(client, alice, content, filename="bomb.zip")
    assert_refused(r, 422, fragment, client, alice, settings)
    if case == "image-pixels":
        assert "65x64 = 4160 pixels, more than max_pixels=4096" in r.json()["detail"]


def test_upload_over_the_size_limit_is_413(client, app, alice, settings, tiny_npz_bytes):
    app.state.settings = settings.model_copy(update={"max_upload_bytes": 1000})
    r = upload(client, alice, tiny_npz_bytes)
    assert_refused(r, 413, "over the limit of 1000 bytes", client, alice, settings)


def test_upload_without_a_file_part(client, alice, settings):
    r = client.post("/v1/datasets", headers=alice, files={"name": (None, "no file"), "image_size": (None, "16")})
    assert_refused(r, 400, "no 'file' part", client, alice, settings)


def test_upload_that_is_not_multipart_is_415(client, alice, settings, tiny_npz_bytes):
    for kwargs in ({"json": {"file": "tiny.npz"}},
                   {"content": tiny_npz_bytes, "headers": {"Content-Type": "application/octet-stream"}}):
        headers = {**alice, **kwargs.pop("headers", {})}
        r = client.post("/v1/datasets", headers=headers, **kwargs)
        assert_refused(r, 415, "multipart/form-data", client, alice, settings)


@pytest.mark.parametrize("value, status, fragment", [
    ("big", 422, "image_size must be a whole number such as 64, got 'big'"),
    ("1.5", 422, "image_size must be a whole number such as 64, got '1.5'"),
    ("24", 422, "image_size must be a multiple of 16 between 16 and 512, got 24"),
])
def test_bad_image_size(client, alice, settings, tiny_npz_bytes, value, status, fragment):
    r = upload(client, alice, tiny_npz_bytes, image_size=value)
    assert_refused(r, status, fragment, client, alice, settings)
