"""Upload ingest rate: a zip of N PNG images (64x64) POSTed to a live server, timed end to end.

The server streams the upload to disk, validates the zip, decodes every image
into the uint8 cache and stores one row per sample before answering 201.

    python bench/api_ingest.py [--n 50000] [--database-url ...]
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from _server import DEFAULT_PG, drop_database, fresh_database, live_server, make_key


def build_zip(path: Path, n: int, size: int, distinct: int = 2000) -> int:
    """A class-folder zip of n PNGs drawn by the synthesiser (2,000 distinct pictures, reused)."""
    from audit.synth import make_synthetic
    ds = make_synthetic(distinct // 2, distinct // 2, size, seed=0)
    pngs = []
    for img in ds.images:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(img)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:  # PNG is compressed already
        for i in range(n):
            j = i % distinct
            folder = "face" if ds.labels[j] == 1 else "background"
            z.writestr(f"data/{folder}/{i:06d}.png", pngs[j])
    return path.stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--database-url", default=DEFAULT_PG)
    p.add_argument("--sqlite", action="store_true", help="use the embedded SQLite default instead")
    args = p.parse_args()
    name = "debias_bench_ingest"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = f"sqlite:///{tmp / 'bench.db'}" if args.sqlite else fresh_database(args.database_url, name)
        if args.sqlite:
            from api.migrate import upgrade
            upgrade(url)
        try:
            zip_path = tmp / "faces.zip"
            nbytes = build_zip(zip_path, args.n, args.image_size)
            _, key = make_key(url)
            with live_server(url, tmp / "data") as base:
                with open(zip_path, "rb") as f:
                    t = time.perf_counter()
                    r = httpx.post(f"{base}/v1/datasets", headers={"Authorization": f"Bearer {key}"},
                                   files={"file": ("faces.zip", f, "application/zip")},
                                   data={"image_size": str(args.image_size)}, timeout=3600)
                    seconds = time.perf_counter() - t
            r.raise_for_status()
            body = r.json()
            print(f"{'sqlite' if args.sqlite else 'postgresql'}: ingested {body['n_samples']:,} images "
                  f"({nbytes / 2**20:.0f} MiB zip, {args.image_size}px) in {seconds:.1f} s: "
                  f"{body['n_samples'] / seconds:,.0f} images/s; counts {body['counts']}")
        finally:
            if not args.sqlite:
                drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
