"""Migrations are the only way tables are made: they go down and up cleanly and match the models."""
from alembic import command
from sqlalchemy import create_engine, inspect

from api.db import Base
from api.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade


def test_downgrade_upgrade_and_check(database_url):
    engine = create_engine(database_url)
    try:
        assert current_revision(engine) == head_revision(database_url)
        downgrade(database_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(database_url, "head")
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        command.check(alembic_config(database_url))   # raises if the models and migrations disagree
    finally:
        engine.dispose()


def test_readyz_reports_a_database_behind_head(client, settings):
    assert client.get("/readyz").json()["status"] == "ready"
    downgrade(settings.resolved_database_url, "base")
    r = client.get("/readyz")
    assert r.status_code == 503 and "debias db upgrade" in r.json()["detail"]
