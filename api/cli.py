"""`debias` with the service commands: serve, worker, db, keys (the engine's commands come from audit.cli)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from audit import cli as engine_cli
from audit.errors import DebiasError


def _service_commands(sub: argparse._SubParsersAction) -> dict:
    p = sub.add_parser("serve", help="run the API (and an in-process job worker) on 127.0.0.1:8000")
    p.add_argument("--host", help="address to listen on (default: DEBIAS_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: DEBIAS_PORT, else 8000)")
    p.add_argument("--no-worker", action="store_true", help="serve only; run `debias worker` elsewhere")

    p = sub.add_parser("worker", help="run a job worker against DEBIAS_DATABASE_URL")
    p.add_argument("--once", action="store_true", help="run at most one job, then exit")

    p = sub.add_parser("db", help="database migrations")
    p.add_argument("action", choices=["upgrade", "current"], help="upgrade: apply migrations up to head")

    p = sub.add_parser("keys", help="API keys")
    keys = p.add_subparsers(dest="keys_action", required=True, parser_class=type(p))
    k = keys.add_parser("create", help="create an API key (printed once)")
    k.add_argument("--name", required=True, help="the owner the key acts for (created if new)")
    k.add_argument("--label", default="cli", help="a note on what the key is for, stored with it")
    k = keys.add_parser("revoke", help="revoke a key (by the part after dbk_, before the next _)")
    k.add_argument("prefix", help="the key's prefix: the part after dbk_, before the next _")
    return {"serve": cmd_serve, "worker": cmd_worker, "db": cmd_db, "keys": cmd_keys}


def _log_to_stderr() -> None:
    """INFO and above of the debias loggers (one line per job start, end and failure) on stderr.

    Only ours: other libraries keep their own levels (alembic's INFO would repeat on every start).
    """
    logger = logging.getLogger("debias")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _settings():
    from .settings import Settings
    return Settings()


def _upgrade(settings) -> None:
    from .migrate import upgrade
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)


def cmd_serve(args) -> None:
    import uvicorn

    from .app import create_app
    from .auth import ensure_local_key
    from .db import make_engine, make_sessionmaker

    _log_to_stderr()  # the embedded worker's job lines (uvicorn configures only its own loggers)
    settings = _settings()
    if settings.is_sqlite:  # the embedded default sets itself up; a shared database is migrated explicitly
        _upgrade(settings)
    if settings.create_local_key:
        engine = make_engine(settings.resolved_database_url)
        with make_sessionmaker(engine)() as session:
            key = ensure_local_key(session)
        engine.dispose()
        if key:
            print(f"created the local owner's API key (shown once, keep it):\n  {key}", flush=True)
    app = create_app(settings, start_worker=not args.no_worker and settings.embedded_worker)
    uvicorn.run(app, host=args.host or settings.host, port=args.port or settings.port)


def cmd_worker(args) -> None:
    from .db import make_engine, make_sessionmaker
    from .worker import Worker

    _log_to_stderr()
    settings = _settings()
    worker = Worker(settings, make_sessionmaker(make_engine(settings.resolved_database_url)))
    # SIGTERM (docker stop) or Ctrl-C: stop the running job's process and put the job back in the
    # queue at once, rather than leave it for the stale-job sweep a minute later.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    if args.once:
        worker.sweep()
        worker.run_once()
    else:
        worker.run_forever()  # sweeps what killed jobs left, then polls


def cmd_db(args) -> None:
    settings = _settings()
    if args.action == "upgrade":
        _upgrade(settings)
        print("database at head")
    else:
        from .db import make_engine
        from .migrate import current_revision, head_revision
        engine = make_engine(settings.resolved_database_url)
        print(f"current {current_revision(engine)}, head {head_revision(settings.resolved_database_url)}")


def cmd_keys(args) -> None:
    from .auth import CACHE_SECONDS, create_key, revoke
    from .db import make_engine, make_sessionmaker

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        if args.keys_action == "revoke":
            if not revoke(session, args.prefix):
                raise DebiasError(f"no active key with prefix {args.prefix!r}")
            print(f"revoked; running servers stop accepting it within {CACHE_SECONDS:.0f} s")
            return
        try:
            owner, key = create_key(session, args.name, args.label)
        except ValueError as exc:
            raise DebiasError(str(exc)) from None
    print(f"API key for {owner.name} (shown once, keep it):\n  {key}")


def main(argv: list[str] | None = None) -> int:
    return engine_cli.main(argv, extensions=[_service_commands])


if __name__ == "__main__":
    sys.exit(main())
