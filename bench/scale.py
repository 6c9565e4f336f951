"""A million images: ingest, training, the per-epoch latent pass, the audit and score storage, each measured.

For each size N (default 100,000 then 1,000,000) the script writes a Colored MNIST
dataset of N 32px images (real MNIST digits, bench/mnist_digits.py, drawn with
replacement and coloured: 1% of each class takes the other class's colour) as
an uncompressed .npz, streamed to disk a chunk at a time, never whole in memory.
Then each step runs in a fresh process, through the same code a user runs:

  ingest   load_dataset of the .npz into the memory-mapped cache
           (DEBIAS_CACHE_DIR), then a second load (a cache hit)
  ingest-png  the same from a folder of PNG files (face/, not_face/), the
           first 50,000 images of the dataset (written once, untimed): decoding
           files is what a folder or zip of photos costs
  train    `debias train --epochs 2` (the default DB-VAE: an ERM warm-up, the
           error set and its coherence gate after 150 steps, a density pass
           before each epoch's debiased batches, validation on the 10% held out)
  latent   the per-epoch latent pass (the encoder over every image) and the
           whole debiasing probability (pass, per-class densities, weights)
  audit    `debias audit`: forward pass, audit_latents (densities, subgroups,
           features, anomalies, report), then samples.csv and figures
  store    the audit's per-sample scores into PostgreSQL (--database-url; a
           scratch database beside it), as the service's audit job stores them

A thread samples /proc/self/status every 20 ms: peak RSS (VmHWM, exact) and the
peaks of its anonymous part (the process's own memory) and its file-backed part
(pages of the memory-mapped cache: the kernel's page cache, shared and
reclaimable, counted in RSS while mapped; readers let go of them every 256 MiB,
audit.imagecache.MappedPages, so they do not add up to the whole cache).

    python bench/scale.py                                    # ~25 min on 2 cores
    python bench/scale.py --sizes 20000 --work /tmp/scale    # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
CHUNK = 50_000
CONFLICTING = 0.01
STEPS = ("ingest", "ingest-png", "train", "latent", "audit", "store")
PNG_FILES = 50_000   # image files for the folder ingest: a million files would measure the file system


class PeakMemory:
    """Peak RSS of this process, and the peaks of its anonymous and file-backed parts, sampled."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak_anon, self.peak_file = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        status = _status()
        self.peak_anon = max(self.peak_anon, status["RssAnon"])
        self.peak_file = max(self.peak_file, status["RssFile"] + status.get("RssShmem", 0))

    def figures(self) -> dict:
        return {"peak_rss": _status()["VmHWM"], "peak_anon": self.peak_anon, "peak_file": self.peak_file}


def _status() -> dict[str, int]:
    """/proc/self/status's memory lines, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0]) * 1024
    return out


# --- the dataset ----------------------------------------------------------------------------------------------

def write_dataset(path: Path, n: int, image_size: int = 32, seed: int = 0) -> None:
    """An uncompressed .npz of n coloured digits, written through a memory-mapped .npy a chunk at a time."""
    sys.path.insert(0, str(BENCH))
    from colored_mnist import CLASS_COLOR, COLORS, _resize
    from mnist_digits import load_digits

    grey, digits, _, _ = load_digits("mnist")
    strokes = (_resize(grey, image_size) * 255).astype(np.uint8)   # the pool once, at the target size
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        images_npy = Path(tmp) / "images.npy"
        images = np.lib.format.open_memmap(images_npy, mode="w+", dtype=np.uint8,
                                           shape=(n, image_size, image_size, 3))
        labels = np.empty(n, dtype=np.int64)
        color, conflicting, digit = (np.empty(n, dtype="<U5"), np.empty(n, dtype="<U3"), np.empty(n, np.int64))
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            pick = rng.integers(0, len(grey), k)
            y = (digits[pick] >= 5).astype(np.int64)
            flip = rng.random(k) < CONFLICTING
            names = np.array([CLASS_COLOR[int(c)] for c in (y ^ flip)])
            base = np.array([COLORS[c] for c in names], dtype=np.float32)
            rgb = np.clip(base * rng.uniform(0.9, 1.1, (k, 1)) + rng.normal(0, 6.0, (k, 3)), 0, 255)
            images[start:start + k] = np.rint(strokes[pick][..., None] / 255.0 * rgb[:, None, None, :]).astype(np.uint8)
            labels[start:start + k], color[start:start + k] = y, names
            conflicting[start:start + k], digit[start:start + k] = np.where(flip, "yes", "no"), digits[pick]
        images.flush()
        del images
        small = {"labels": labels, "attr_color": color, "attr_conflicting": conflicting, "attr_digit": digit}
        partial = path.with_suffix(".npz.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.write(images_npy, "images.npy")   # streamed from disk
            for name, array in small.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)
        os.replace(partial, path)


# --- the steps, each in its own process -----------------------------------------------------------------------

def _cli(args: list[str]) -> None:
    from audit.cli import main
    code = main(args)
    if code:
        raise SystemExit(f"debias {args[0]} exited {code}")


def step_ingest(work: Path, n: int) -> dict:
    from audit.loaders import load_dataset
    shutil.rmtree(work / "cache", ignore_errors=True)   # a decode, not a hit of an earlier run's entry
    t = time.perf_counter()
    ds = load_dataset(work / "data.npz", image_size=32, cache_dir=work / "cache", max_samples=n)
    seconds = time.perf_counter() - t
    assert isinstance(ds.images, np.memmap) and len(ds) == n
    t = time.perf_counter()
    again = load_dataset(work / "data.npz", image_size=32, cache_dir=work / "cache", max_samples=n)
    hit = time.perf_counter() - t
    assert isinstance(again.images, np.memmap)
    return {"seconds": seconds, "rate": n / seconds, "unit": "images/s", "note": f"cache hit {hit:.2f} s"}


def step_ingest_png(work: Path, n: int) -> dict:
    from PIL import Image

    from audit.loaders import load_dataset
    folder, count, marker = work / "png", min(n, PNG_FILES), work / "png.written"
    if not marker.exists():
        cached = load_dataset(work / "data.npz", image_size=32, cache_dir=work / "cache", max_samples=n)
        for name in ("face", "not_face"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            kind = "face" if cached.labels[i] else "not_face"
            Image.fromarray(np.asarray(cached.images[i])).save(folder / kind / f"{i:07d}.png")
        marker.touch()
    shutil.rmtree(work / "cache-png", ignore_errors=True)   # a decode, not a cache hit
    t = time.perf_counter()
    ds = load_dataset(folder, image_size=32, cache_dir=work / "cache-png", max_samples=count + 1)
    seconds = time.perf_counter() - t
    assert len(ds) == count, len(ds)
    return {"seconds": seconds, "rate": count / seconds, "unit": "images/s",
            "note": f"{count:,} PNG files in class folders"}


def step_train(work: Path, n: int) -> dict:
    shutil.rmtree(work / "model", ignore_errors=True)   # a rerun on the same --work trains afresh
    t = time.perf_counter()
    _cli(["train", str(work / "data.npz"), "--out", str(work / "model"), "--image-size", "32", "--epochs", "2",
          "--max-samples", str(n), "--no-progress"])
    seconds = time.perf_counter() - t
    history = json.loads((work / "model" / "history.json").read_text())
    epochs = history if isinstance(history, list) else history["epochs"]
    last = epochs[-1]
    steps = sum(e["seconds"] for e in epochs)
    return {"seconds": seconds, "rate": last["samples_per_second"], "unit": "samples/s in epoch 2's steps",
            "note": f"steps {steps:.0f} s of {seconds:.0f} s (epoch 2: {last['seconds']:.0f} s, "
                    f"{last['batches']} batches); schedule {last.get('error_schedule')}"}


def step_latent(work: Path, n: int) -> dict:
    import torch  # noqa: F401 (before the pipeline, as the CLI does)

    from audit.checkpoint import load_model
    from audit.holdout import validation_split
    from audit.loaders import load_dataset
    from audit.models import pick_device
    from audit.training import TrainConfig, debiasing_probability, latent_pass
    device = pick_device(None)
    model, _ = load_model(work / "model", device)
    ds = load_dataset(work / "data.npz", image_size=32, cache_dir=work / "cache", max_samples=n)
    t = time.perf_counter()
    latent_pass(model, ds.images, device)
    seconds = time.perf_counter() - t
    cfg = TrainConfig()
    pool = ~validation_split(ds.labels, cfg.val_fraction, cfg.seed)
    t = time.perf_counter()
    debiasing_probability(model, ds.images, ds.labels, cfg, device, pool, None)
    whole = time.perf_counter() - t
    return {"seconds": seconds, "rate": n / seconds, "unit": "images/s",
            "note": f"with densities and weights {whole:.1f} s"}


def step_audit(work: Path, n: int) -> dict:
    import audit.report as report
    timed: dict[str, float] = {}

    def timing(name, fn):
        def wrapped(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                timed[name] = timed.get(name, 0.0) + time.perf_counter() - t
        return wrapped

    # Instrumented where run_audit looks them up, so the audit runs exactly as `debias audit` runs it.
    report.predict = timing("forward", report.predict)
    report.audit_latents = timing("latents", report.audit_latents)
    t = time.perf_counter()
    _cli(["audit", str(work / "data.npz"), "--model", str(work / "model"), "--out", str(work / "audit"),
          "--max-samples", str(n), "--no-progress", "--force"])
    seconds = time.perf_counter() - t
    subgroups = len(json.loads((work / "audit" / "report.json").read_text())["subgroups"])
    return {"seconds": timed["latents"], "rate": n / timed["latents"], "unit": "latent vectors/s",
            "note": f"audit_latents (densities, {subgroups} subgroups, report); forward pass "
                    f"{timed['forward']:.0f} s; whole `debias audit` {seconds:.0f} s with samples.csv and figures"}


def step_store(work: Path, n: int, database_url: str) -> dict:
    import pandas as pd
    sys.path.insert(0, str(BENCH))
    from _server import drop_database, fresh_database, make_key
    from api_anomalies import store_scores

    from api.services.datasets import attribute_records
    from audit.loaders import load_dataset
    samples = pd.read_csv(work / "audit" / "samples.csv")
    records = attribute_records(load_dataset(work / "data.npz", image_size=32, cache_dir=work / "cache",
                                             max_samples=n))
    name = "debias_bench_scale"
    url = fresh_database(database_url, name)
    try:
        owner_id, _ = make_key(url)
        _, seconds = store_scores(url, owner_id, samples, records, image_size=32)
    finally:
        drop_database(database_url, name)
    return {"seconds": seconds, "rate": n / seconds, "unit": "rows/s",
            "note": "COPY in one transaction, then ANALYZE (the audit job's path)"}


def child(step: str, work: Path, n: int, database_url: str) -> None:
    with PeakMemory() as memory:
        if step == "store":
            result = step_store(work, n, database_url)
        else:
            result = {"ingest": step_ingest, "ingest-png": step_ingest_png, "train": step_train, "latent": step_latent,
                      "audit": step_audit}[step](work, n)
    print("RESULT " + json.dumps({**result, **memory.figures()}), flush=True)


# --- the driver -----------------------------------------------------------------------------------------------

def run_step(step: str, work: Path, n: int, database_url: str) -> dict:
    env = {**os.environ, "DEBIAS_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(BENCH.parent)}
    proc = subprocess.run([sys.executable, __file__, "--child", step, "--work", str(work), "--sizes", str(n),
                           "--database-url", database_url], env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"step {step} at N={n} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def gib(b: int) -> str:
    return f"{b / 2 ** 30:5.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    p.add_argument("--work", type=Path, default=None, help="folder for the datasets, cache, models and audits "
                                                           "(default: a temporary one, removed at the end)")
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                   help="an existing PostgreSQL database to create a scratch database beside")
    p.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.work, args.sizes[0], args.database_url)
        return
    import torch
    print(f"{os.cpu_count()} CPU cores, torch {torch.__version__} on {torch.get_num_threads()} threads, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; 32px Colored MNIST, 1% conflicting", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        rows = []
        for n in args.sizes:
            work = root / f"n{n}"
            work.mkdir(parents=True, exist_ok=True)
            if not (work / "data.npz").exists():
                t = time.perf_counter()
                write_dataset(work / "data.npz", n)
                print(f"N={n:,}: wrote data.npz ({(work / 'data.npz').stat().st_size / 2 ** 30:.2f} GiB) in "
                      f"{time.perf_counter() - t:.0f} s", flush=True)
            for step in args.steps:
                r = run_step(step, work, n, args.database_url)
                rows.append((n, step, r))
                print(f"N={n:>9,} {step:6s} {r['seconds']:7.1f} s {r['rate']:9,.0f} {r['unit']:<30s} "
                      f"peak RSS {gib(r['peak_rss'])} GiB (anonymous {gib(r['peak_anon'])}, "
                      f"file-backed {gib(r['peak_file'])})  {r['note']}", flush=True)
        if len(args.sizes) > 1:
            small, large = min(args.sizes), max(args.sizes)
            print(f"\nfrom N={small:,} to N={large:,} ({large / small:.0f}x):")
            by = {(n, s): r for n, s, r in rows}
            for step in args.steps:
                a, b = by[(small, step)], by[(large, step)]
                print(f"  {step:6s} time x{b['seconds'] / a['seconds']:5.1f}, peak anonymous memory "
                      f"x{b['peak_anon'] / a['peak_anon']:4.1f} ({gib(a['peak_anon'])} -> {gib(b['peak_anon'])} GiB)")


if __name__ == "__main__":
    main()
