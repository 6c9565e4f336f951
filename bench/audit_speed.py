"""Audit speed and memory on N latent vectors: density + weights + anomalies + report.

Each (estimator, N) runs in a fresh process, so its peak memory is its own:
the figure printed is the peak resident memory the audit added on top of its
inputs.  Linear memory shows as a constant number of bytes per sample.

    python bench/audit_speed.py                      # N = 25k, 50k, 100k; every estimator
    python bench/audit_speed.py --sizes 100000 --estimators histogram
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from audit.density import ESTIMATORS


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(n: int, estimator: str, latent_dim: int) -> None:
    from audit.report import AuditConfig, audit_latents

    rng = np.random.default_rng(0)
    mu = rng.normal(size=(n, latent_dim)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    rare = rng.random(n) < 0.05
    mu[rare, 3] += 4.0
    recon = rng.gamma(2.0, 0.02, n)
    attributes = pd.DataFrame({"tone": np.where(rare, "dark", "light"), "pose": rng.choice(["a", "b", "c"], n)})
    before = _rss_bytes()
    t = time.perf_counter()
    result = audit_latents(mu, labels, AuditConfig(density=estimator), recon_error=recon, attributes=attributes)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "extra_bytes": max(peak - before, 0),
                      "anomalies": result.report["anomalies"]["count"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.latent_dim)
        return
    print(f"audit of N latent vectors ({args.latent_dim} dims, 2 classes, 2 attributes): "
          f"per-class density, weights, anomalies, report")
    print(f"{'estimator':18s} {'N':>8s} {'seconds':>8s} {'extra MB':>9s} {'bytes/sample':>12s}")
    for est in args.estimators:
        for n in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), est, "--latent-dim",
                                  str(args.latent_dim)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{est:18s} {n:8d} {r['seconds']:8.2f} {r['extra_bytes'] / 2**20:9.1f} "
                  f"{r['extra_bytes'] / n:12.0f}", flush=True)


if __name__ == "__main__":
    main()
