"""API keys from the command line: create prints the key once, revoke stops it."""
import pytest

from api import auth
from api.cli import main


@pytest.fixture
def env(monkeypatch, settings, app):
    monkeypatch.setenv("DEBIAS_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("DEBIAS_DATA_DIR", str(settings.data_dir))


def _create(capsys, name: str) -> str:
    assert main(["keys", "create", "--name", name]) == 0
    out = capsys.readouterr().out
    key = out.split()[-1]
    assert key.startswith("dbk_") and "shown once" in out
    return key


def test_created_key_works_and_revoked_key_stops(env, client, app, capsys):
    key = _create(capsys, "carol")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    with app.state.sessions() as session:
        from api.tables import ApiKey
        stored = session.query(ApiKey).one()
        assert key not in (stored.key_hash, stored.prefix)           # only a hash is stored
    prefix = key.split("_")[1]
    assert main(["keys", "revoke", prefix]) == 0
    assert "revoked" in capsys.readouterr().out
    # Verified keys are cached briefly; once the cache forgets it, the key is refused.
    app.state.key_cache.clear()
    assert client.get("/v1/datasets", headers=headers).status_code == 401
    assert main(["keys", "revoke", prefix]) == 2
    assert "no active key" in capsys.readouterr().err


def test_same_owner_name_gets_a_second_key_for_the_same_data(env, client, capsys, tiny_npz_bytes):
    from .conftest import upload
    first = {"Authorization": f"Bearer {_create(capsys, 'dave')}"}
    second = {"Authorization": f"Bearer {_create(capsys, 'dave')}"}
    assert upload(client, first, tiny_npz_bytes).status_code == 201
    assert len(client.get("/v1/datasets", headers=second).json()) == 1


def test_first_start_creates_one_local_key(app):
    with app.state.sessions() as session:
        key = auth.ensure_local_key(session)
        assert key and key.startswith("dbk_")
        assert auth.ensure_local_key(session) is None                # only on an empty database
