"""`create_app()`: the FastAPI application, its error mapping and (optionally) an in-process worker."""
from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from audit import __version__

from . import errors
from .auth import KeyCache
from .db import make_engine, make_sessionmaker
from .routes import audits, counterfactuals, datasets, health, jobs, model_sets, models, reviews
from .settings import Settings
from .web import STATIC_DIR
from .web import pages as web_pages
from .worker import Worker

log = logging.getLogger("debias.api")


def create_app(settings: Settings | None = None, start_worker: bool | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = thread = None
        if start_worker if start_worker is not None else settings.embedded_worker:
            worker = Worker(settings, sessions)
            thread = threading.Thread(target=worker.run_forever, name="debias-worker", daemon=True)
            thread.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stopping.set()
                thread.join(timeout=30)
            engine.dispose()

    app = FastAPI(title="debias", version=__version__, lifespan=lifespan,
                  description="Audit image datasets for bias with a DB-VAE; retrain with debiased sampling.")
    app.state.settings, app.state.engine, app.state.sessions = settings, engine, sessions
    app.state.key_cache = KeyCache()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    errors.install(app)

    for module in (health, datasets, audits, reviews, models, model_sets, counterfactuals, jobs):
        app.include_router(module.router)
    app.include_router(web_pages.router)  # the web pages, at /
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
