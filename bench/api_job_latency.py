"""GET /v1/jobs/{id} latency at 50 concurrent clients on loopback, in a bounded run.

Two runs against a live server (PostgreSQL by default):
- paced: each of the 50 clients sends one request every `--interval` ms for
  `--seconds` (a bounded load, as polling web pages and pipelines make);
- saturated: each client sends its next request as soon as the last answered
  (throughput ceiling; latency there is queueing: clients / throughput).
Latency is measured by the client, so it includes the loopback HTTP round trip.

    python bench/api_job_latency.py [--clients 50] [--seconds 15] [--interval 100] [--workers 2]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from _server import DEFAULT_PG, drop_database, fresh_database, live_server, make_key, percentile


def make_jobs(url: str, owner_id: int, n: int) -> list[int]:
    from api.db import make_engine, make_sessionmaker
    from api.services.jobs import enqueue
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        ids = [enqueue(session, owner_id, "train", {"model_id": 0}, None, 3).id for _ in range(n)]
        session.commit()
    engine.dispose()
    return ids


async def run(base: str, key: str, job_ids: list[int], clients: int, seconds: float,
              interval_ms: float | None) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def one_client(i: int) -> None:
            nonlocal errors
            job = job_ids[i % len(job_ids)]
            next_at = time.perf_counter() + (interval_ms or 0) / 1000 * i / clients  # spread the start
            while True:
                if interval_ms:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval_ms / 1000
                if time.perf_counter() >= deadline:
                    return
                t = time.perf_counter()
                r = await client.get(f"/v1/jobs/{job}")
                latencies.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200

        await asyncio.gather(*(one_client(i) for i in range(clients)))
    return latencies, errors


def report(label: str, latencies: list[float], errors: int, seconds: float) -> None:
    print(f"{label:34s} {len(latencies) / seconds:7.0f} req/s  p50 {percentile(latencies, 50):6.1f} ms  "
          f"p99 {percentile(latencies, 99):6.1f} ms  max {max(latencies):6.1f} ms  errors {errors}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--interval", type=float, default=500,
                   help="ms between one client's requests in the paced run (a progress bar polls about so)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (debias serve runs one)")
    p.add_argument("--database-url", default=DEFAULT_PG)
    args = p.parse_args()
    name = "debias_bench_jobs"
    url = fresh_database(args.database_url, name)
    try:
        owner_id, key = make_key(url)
        job_ids = make_jobs(url, owner_id, 100)
        with tempfile.TemporaryDirectory() as tmp, live_server(url, Path(tmp), workers=args.workers) as base:
            asyncio.run(run(base, key, job_ids, args.clients, 2, None))  # warm-up: connections, caches
            lat, err = asyncio.run(run(base, key, job_ids, args.clients, args.seconds, args.interval))
            report(f"paced ({args.clients} clients x {1000 / args.interval:.0f}/s)", lat, err, args.seconds)
            lat, err = asyncio.run(run(base, key, job_ids, args.clients, args.seconds, None))
            report(f"saturated ({args.clients} clients)", lat, err, args.seconds)
    finally:
        drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
