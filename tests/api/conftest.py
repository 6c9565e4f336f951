"""Service test fixtures: an isolated, migrated database per test (SQLite and, when
DEBIAS_TEST_DATABASE_URL is set, PostgreSQL), a data folder, an app and API keys.

Isolation is by template clone: each backend is migrated once per test process,
and every test gets a copy (a file copy for SQLite, CREATE DATABASE ... TEMPLATE
for PostgreSQL), so workers on other connections see the same data a test wrote.
"""
from __future__ import annotations

import os
import shutil
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from api.auth import create_key
from api.migrate import upgrade
from api.settings import Settings
from api.worker import Worker
from audit.synth import make_synthetic, save_npz

PG_ENV = "DEBIAS_TEST_DATABASE_URL"
BACKENDS = ["sqlite", "postgresql"]
TRAIN_FAST = {"epochs": 1, "batch_size": 8, "latent_dim": 8}


def _pg_admin_url() -> str:
    return os.environ[PG_ENV]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template():
    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL variants of the service tests need {PG_ENV} (a PostgreSQL URL whose user may "
                    f"create databases; .ci/run sets it); their SQLite variants ran")
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"debias_tpl_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(_pg_admin_url()).set(database=name)
    upgrade(url.render_as_string(hide_password=False))
    yield admin, name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "debias.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin, template = request.getfixturevalue("pg_template")
    name = f"debias_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(tmp_path, database_url):
    return Settings(data_dir=tmp_path / "data", database_url=database_url, embedded_worker=False,
                    create_local_key=False, heartbeat_seconds=0.2, poll_seconds=0.05, device="cpu",
                    default_image_size=16, _env_file=None)


@pytest.fixture
def app(settings):
    return create_app(settings, start_worker=False)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _key(app, name: str) -> dict:
    with app.state.sessions() as session:
        _, key = create_key(session, name)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def alice(app):
    return _key(app, "alice")


@pytest.fixture
def bob(app):
    return _key(app, "bob")


def run_jobs(app, limit: int = 20) -> int:
    """Run queued jobs in this thread until none is left; returns how many ran."""
    worker = Worker(app.state.settings, app.state.sessions, worker_id="test-worker")
    ran = 0
    while ran < limit and worker.run_once():
        ran += 1
    return ran


def _npz_bytes(folder, ds) -> bytes:
    path = folder / "data.npz"
    save_npz(ds, path)
    return path.read_bytes()


@pytest.fixture(scope="session")
def tiny_npz_bytes(tmp_path_factory):
    return _npz_bytes(tmp_path_factory.mktemp("tiny"), make_synthetic(24, 24, image_size=16, seed=0))


@pytest.fixture(scope="session")
def subgroup_npz_bytes(tmp_path_factory):
    """60 faces, 15 of them replaced by flat blue squares (look=blue), and 30 non-faces: a positive subgroup
    that even a model trained for two epochs on 90 images sets apart (a tiny set's latent holds no other)."""
    ds = make_synthetic(60, 30, image_size=16, seed=0)
    blue = np.flatnonzero(ds.labels == 1)[:15]
    ds.images[blue] = np.array([30, 60, 220], dtype=np.uint8)
    ds.attributes["look"] = "face"
    ds.attributes.loc[blue, "look"] = "blue"
    return _npz_bytes(tmp_path_factory.mktemp("subgroup"), ds)


@pytest.fixture(scope="session")
def test_npz_bytes(tmp_path_factory):
    return _npz_bytes(tmp_path_factory.mktemp("test"), make_synthetic(12, 12, image_size=16, seed=1, balanced=True))


def assert_error(r, status: int, *fragments: str) -> None:
    """The documented error shape, {"detail": str}, with the status and the fragments expected."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]


def upload(client, headers, content: bytes, filename: str = "tiny.npz", **fields):
    data = {k: str(v) for k, v in {"image_size": 16, **fields}.items()}
    return client.post("/v1/datasets", headers=headers, files={"file": (filename, content)}, data=data)


def rng_images(n: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)
