"""Anomaly lists on a 1,000,000-sample audit in PostgreSQL: storing the scores, then paging.

Stores N per-sample score rows through the worker's own code path (bulk COPY in
one transaction), then times GET /v1/audits/{id}/anomalies from a loopback
client against a live server: the first page and a deep cursor page (at 90%
of the list), each requested repeatedly; p50 and p95 in milliseconds.

    python bench/api_anomalies.py [--n 1000000] [--database-url postgresql+psycopg://...]
"""
from __future__ import annotations

import argparse
from collections import Counter
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import select

from _server import DEFAULT_PG, drop_database, fresh_database, live_server, make_key, percentile


def synthetic_samples(n: int) -> tuple[pd.DataFrame, list[dict]]:
    """An audit's samples frame (samples.csv's columns) of n rows and their attribute records."""
    rng = np.random.default_rng(0)
    weight = rng.random(n)
    score = rng.standard_t(3, n)
    tones = np.array(["light", "medium", "dark"])[rng.choice(3, n, p=[0.5, 0.45, 0.05])]
    samples = pd.DataFrame({"index": np.arange(n), "label": rng.integers(0, 2, n),
                            "log_density": rng.normal(size=n), "sampling_weight": weight / weight.sum(),
                            "anomaly_score": score, "is_anomaly": score > 3.5, "reconstruction_error": 0.05,
                            "predicted_probability": 0.5, "subgroup": rng.integers(0, 12, n),
                            "under_representation": rng.random(n)})
    return samples, [{"skin_tone": str(t)} for t in tones]


def store_scores(url: str, owner_id: int, samples: pd.DataFrame, records: list[dict],
                 image_size: int = 64) -> tuple[int, float]:
    """(audit id, seconds): the rows stored as the audit job stores them (bulk COPY, one transaction)."""
    from api.db import make_engine, make_sessionmaker
    from api.services.bulk import bulk_insert
    from api.services.runners import SCORE_COLUMNS, score_rows
    from api.tables import Audit, AuditScore, Dataset, TrainedModel

    n, n_positive = len(samples), int(samples["label"].sum())
    attributes = {name: dict(Counter(r[name] for r in records)) for name in (records[0] if records else {})}
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        ds = Dataset(owner_id=owner_id, name="bench", file_format="npz", image_size=image_size, n_samples=n,
                     n_positive=n_positive, n_negative=n - n_positive, attributes=attributes, problems=[],
                     upload_bytes=0)
        session.add(ds)
        session.flush()
        model = TrainedModel(owner_id=owner_id, dataset_id=ds.id, method="dbvae", density="histogram",
                             image_size=image_size, options={}, history=[], status="ready")
        session.add(model)
        session.flush()
        audit = Audit(owner_id=owner_id, dataset_id=ds.id, model_id=model.id, options={}, status="pending")
        session.add(audit)
        session.commit()
        audit_id = audit.id
        started = time.perf_counter()
        bulk_insert(session, AuditScore.__table__, SCORE_COLUMNS, score_rows(audit_id, samples, records))
        audit.status, audit.n_samples, audit.report = "ready", n, {"anomalies": {"top": []}}
        session.commit()
        seconds = time.perf_counter() - started
    engine.dispose()
    return audit_id, seconds


def deep_cursor(url: str, audit_id: int, n: int) -> str:
    """A cursor at 90% of the anomaly list, built from the row there (what page 18,000 would hand out)."""
    from api.db import make_engine, make_sessionmaker
    from api.services.audits import encode_cursor
    from api.tables import AuditScore

    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        deep = session.execute(select(AuditScore.anomaly_score, AuditScore.sample_index)
                               .where(AuditScore.audit_id == audit_id)
                               .order_by(AuditScore.anomaly_score.desc(), AuditScore.sample_index.desc())
                               .offset(int(n * 0.9)).limit(1)).one()
    engine.dispose()
    return encode_cursor("anomaly_score", deep[0], deep[1])


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
        samples, records = synthetic_samples(args.n)
        audit_id, seconds = store_scores(url, owner_id, samples, records)
        cursor = deep_cursor(url, audit_id, args.n)
        print(f"stored {args.n:,} score rows (COPY, one transaction, 3 indexes) in {seconds:.1f} s "
              f"({args.n / seconds:,.0f} rows/s)", flush=True)
        with tempfile.TemporaryDirectory() as tmp, live_server(url, Path(tmp)) as base:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                path = f"/v1/audits/{audit_id}/anomalies"
                cases = {"first page (limit 50)": {"limit": 50},
                         "deep cursor page at 90% (limit 50)": {"limit": 50, "cursor": cursor},
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
