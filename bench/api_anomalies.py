"""Anomaly lists on a 1,000,000-sample audit in PostgreSQL: storing the scores, then paging.

Stores N per-sample score rows through the worker's own code path (bulk COPY in
one transaction), then times GET /v1/audits/{id}/anomalies from a loopback
client against a live server: the first page and a deep cursor page (at 90%
of the list), each requested repeatedly; p50 and p95 in milliseconds.

    python bench/api_anomalies.py [--n 1000000] [--database-url postgresql+psycopg://...]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select

from _server import DEFAULT_PG, drop_database, fresh_database, live_server, make_key, percentile


def store_scores(url: str, owner_id: int, n: int) -> tuple[int, float]:
    from api.db import make_engine, make_sessionmaker
    from api.services.bulk import bulk_insert
    from api.services.runners import SCORE_COLUMNS
    from api.tables import Audit, AuditScore, Dataset, TrainedModel

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    log_density = rng.normal(size=n)
    weight = rng.random(n)
    weight /= weight.sum()
    score = rng.standard_t(3, n)
    tones = np.array(["light", "medium", "dark"])[rng.choice(3, n, p=[0.5, 0.45, 0.05])]
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        ds = Dataset(owner_id=owner_id, name="bench", file_format="npz", image_size=64, n_samples=n,
                     n_positive=int(labels.sum()), n_negative=int(n - labels.sum()),
                     attributes={"skin_tone": {"light": 1, "medium": 1, "dark": 1}}, problems=[], upload_bytes=0)
        session.add(ds)
        session.flush()
        model = TrainedModel(owner_id=owner_id, dataset_id=ds.id, method="dbvae", density="histogram",
                             image_size=64, options={}, history=[], status="ready")
        session.add(model)
        session.flush()
        audit = Audit(owner_id=owner_id, dataset_id=ds.id, model_id=model.id, options={}, status="pending")
        session.add(audit)
        session.commit()
        audit_id = audit.id
        rows = ((audit_id, i, int(labels[i]), float(log_density[i]), float(weight[i]), float(score[i]),
                 bool(score[i] > 3.5), 0.05, 0.5, {"skin_tone": str(tones[i])}) for i in range(n))
        started = time.perf_counter()
        bulk_insert(session, AuditScore.__table__, SCORE_COLUMNS, rows)
        audit.status, audit.n_samples, audit.report = "ready", n, {"anomalies": {"top": []}}
        session.commit()
        seconds = time.perf_counter() - started
        # A cursor at 90% of the list, built from the row there (what page 18,000 would hand out).
        deep = session.execute(select(AuditScore.anomaly_score, AuditScore.sample_index)
                               .where(AuditScore.audit_id == audit_id)
                               .order_by(AuditScore.anomaly_score.desc(), AuditScore.sample_index.desc())
                               .offset(int(n * 0.9)).limit(1)).one()
    engine.dispose()
    from api.services.audits import encode_cursor
    return audit_id, seconds, encode_cursor("anomaly_score", deep[0], deep[1])


def time_requests(client: httpx.Client, url: str, params: dict, repeat: int) -> list[float]:
    client.get(url, params=params).raise_for_status()  # warm-up
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(url, params=params)
        out.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--database-url", default=DEFAULT_PG, help="an existing PostgreSQL database to create a "
                                                               "scratch database beside")
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = p.parse_args()
    name = "debias_bench_anomalies"
    url = fresh_database(args.database_url, name)
    try:
        owner_id, key = make_key(url)
        audit_id, seconds, deep_cursor = store_scores(url, owner_id, args.n)
        print(f"stored {args.n:,} score rows (COPY, one transaction, 3 indexes) in {seconds:.1f} s "
              f"({args.n / seconds:,.0f} rows/s)", flush=True)
        with tempfile.TemporaryDirectory() as tmp, live_server(url, Path(tmp)) as base:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                path = f"/v1/audits/{audit_id}/anomalies"
                cases = {"first page (limit 50)": {"limit": 50},
                         "deep cursor page at 90% (limit 50)": {"limit": 50, "cursor": deep_cursor},
                         "first page, label=1 & skin_tone:dark": {"limit": 50, "label": 1,
                                                                  "attribute": "skin_tone:dark"},
                         "samples by sampling_weight, first page": {"limit": 50}}
                for label, params in cases.items():
                    url_path = f"/v1/audits/{audit_id}/samples" if "samples" in label else path
                    ms = time_requests(client, url_path, params, args.repeat)
                    print(f"{label:42s} p50 {percentile(ms, 50):6.1f} ms  p95 {percentile(ms, 95):6.1f} ms  "
                          f"max {max(ms):6.1f} ms  ({args.repeat} requests)", flush=True)
    finally:
        if not args.keep:
            drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
