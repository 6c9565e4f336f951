"""Shared by the API benches: a migrated database, a live uvicorn server on loopback, an API key."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def fresh_database(admin_url: str, name: str) -> str:
    """(Re)create database `name` next to `admin_url`, migrated to head; returns its URL."""
    from api.migrate import upgrade
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(database_url: str, data_dir: Path, workers: int = 1, extra_env: dict | None = None):
    """Serve the app with uvicorn in a child process (no job worker); yields the base URL."""
    with live_server_process(database_url, data_dir, workers, extra_env) as (base, _proc):
        yield base


@contextlib.contextmanager
def live_server_process(database_url: str, data_dir: Path, workers: int = 1, extra_env: dict | None = None):
    """As live_server, yielding (base URL, the server's Popen) for benches that watch the process."""
    port = free_port()
    env = {**os.environ, "DEBIAS_DATABASE_URL": database_url, "DEBIAS_DATA_DIR": str(data_dir),
           "DEBIAS_EMBEDDED_WORKER": "false", **(extra_env or {})}
    cmd = [sys.executable, "-m", "uvicorn", "api.asgi:app", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def make_key(database_url: str, name: str = "bench") -> tuple[int, str]:
    from api.auth import create_key
    from api.db import make_engine, make_sessionmaker
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        owner, key = create_key(session, name)
    engine.dispose()
    return owner.id, key


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
