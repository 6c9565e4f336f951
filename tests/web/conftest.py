"""Web page fixtures.

Page unit tests reuse the service fixtures (an isolated database per test, on
SQLite and PostgreSQL) through the ASGI client. Browser tests drive Debian's
headless Chromium (Playwright with the system browser, never a downloaded one)
against a live server on loopback: the app with its embedded job worker, served
by uvicorn in a thread, on SQLite. A failing browser test leaves a screenshot in
test-artifacts/web/.
"""
from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_key
from api.migrate import upgrade
from api.settings import Settings
from audit.synth import make_synthetic, save_npz

from ..api.conftest import (  # noqa: F401  (fixtures, registered here by import)
    TRAIN_FAST,
    alice,
    app,
    bob,
    database_url,
    pg_template,
    run_jobs,
    settings,
    sqlite_template,
    subgroup_npz_bytes,
    test_npz_bytes,
    tiny_npz_bytes,
    upload,
)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
LOOPBACK = "http://127.0.0.1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def key_of(headers: dict) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


# --------------------------------------------------------------------------- page unit tests (ASGI client)
@pytest.fixture
def web(app):
    """A client as a browser on loopback sees the app: http://127.0.0.1 (so the cookie is not Secure)."""
    with TestClient(app, base_url=LOOPBACK) as c:
        yield c


def sign_in(client: TestClient, headers: dict) -> None:
    r = client.post("/login", data={"key": key_of(headers)}, headers={"Origin": str(client.base_url)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    assert client.cookies.get("debias_key") == key_of(headers)


# --------------------------------------------------------------------------- browser tests
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app, url: str):
        self.app, self.url = app, url

    def new_key(self, prefix: str = "user") -> str:
        with self.app.state.sessions() as session:
            _, key = create_key(session, f"{prefix}-{uuid.uuid4().hex[:8]}")
        return key


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    import uvicorn

    folder = tmp_path_factory.mktemp("live")
    settings = Settings(data_dir=folder / "data", database_url=f"sqlite:///{folder / 'debias.db'}",
                        create_local_key=False, heartbeat_seconds=0.5, poll_seconds=0.1, device="cpu",
                        default_image_size=16, _env_file=None)
    upgrade(settings.resolved_database_url)
    app = create_app(settings, start_worker=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    yield LiveServer(app, f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright for Python (pip install playwright; the system "
                    "chromium is used, no `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test at teardown."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(request, browser, live_server):
    """A fresh browser context at 1280px; nothing may leave loopback; a screenshot if the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True,
                                  base_url=live_server.url)
    context.set_default_timeout(20_000)
    outside: list[str] = []

    def guard(route):
        url = route.request.url
        if urlsplit(url).hostname != "127.0.0.1" and not url.startswith("data:"):
            outside.append(url)
            return route.abort()
        return route.continue_()

    context.route("**/*", guard)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)[-150:]
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # the page may be gone; the test's own failure matters more
            print(f"no screenshot: {exc}")
    context.close()
    assert not outside, f"the pages asked for something off this server: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def npz_files(tmp_path_factory, subgroup_npz_bytes):  # noqa: F811  (the fixture imported above)
    folder = tmp_path_factory.mktemp("npz")
    files = {"train": folder / "faces-train.npz", "test": folder / "faces-test.npz",
             "subgroup": folder / "faces-blue.npz"}
    files["subgroup"].write_bytes(subgroup_npz_bytes)
    save_npz(make_synthetic(24, 24, image_size=16, seed=0), files["train"])
    save_npz(make_synthetic(12, 12, image_size=16, seed=1, balanced=True), files["test"])
    return files


def browser_sign_in(page, key: str, next_path: str = "/") -> None:
    page.goto(next_path)
    page.wait_for_url(re.compile(r"/login"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("text=Signed in as")
    page.wait_for_load_state("load")  # the deferred script has run: the page's forms are live


