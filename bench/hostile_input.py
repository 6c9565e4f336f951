"""What hostile uploads cost a live server before it refuses them: memory, time and temporary disk.

Four cases from the security probe, each sent to a fresh uvicorn server (embedded SQLite, no worker):
  field flood   a chunked multipart upload whose 'name' field streams 768 MB
  npz bomb      a ~2 MB .npz whose images array declares 2.1 GB
  h5 bomb       a few-KB .h5 declaring 1,000,000 samples (storage never allocated)
  zip bomb      a ~4 MB zip whose image entries unpack to 4 GB

For each: the HTTP status and message, seconds to the answer, the server's peak resident memory above
its level before the request (VmRSS sampled every 10 ms; a fresh server per case), and the peak bytes in the
server's temporary and data folders beyond the uploaded file itself.

    python bench/hostile_input.py
"""
from __future__ import annotations

import io
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from _server import live_server_process, make_key

GB = 1 << 30
BOUNDARY = "hostileBoundary"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def folder_bytes(*roots: Path) -> int:
    total = 0
    for root in roots:
        for path in root.rglob("*"):
            try:
                if path.is_file():
                    total += path.stat().st_size
            except FileNotFoundError:
                pass  # removed while we looked
    return total


class Watch(threading.Thread):
    """Samples the server's resident memory and the folders' size every 10 ms; keeps the peaks."""

    def __init__(self, pid: int, *roots: Path):
        super().__init__(daemon=True)
        self.pid, self.roots, self.done = pid, roots, threading.Event()
        self.peak_disk, self.peak_rss_kib = 0, status_kib(pid, "VmRSS")

    def run(self):
        while not self.done.is_set():
            self.peak_rss_kib = max(self.peak_rss_kib, status_kib(self.pid, "VmRSS"))
            self.peak_disk = max(self.peak_disk, folder_bytes(*self.roots))
            time.sleep(0.01)


def npz_bomb(path: Path, declared: int = int(2.1e9), side: int = 64) -> None:
    """An .npz whose images member is zeros, written in chunks so this script never holds it."""
    n = declared // (side * side * 3)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("images.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                    "shape": (n, side, side, 3)})
            chunk = bytes(64 << 20)
            left = n * side * side * 3
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        buf = io.BytesIO()
        np.save(buf, np.arange(n) % 2)
        z.writestr("labels.npy", buf.getvalue())


def h5_bomb(path: Path, n: int = 1_000_000) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(n, 16, 16, 3), dtype="u1", chunks=(1024, 16, 16, 3),
                         compression="gzip")
        f.create_dataset("labels", shape=(n,), dtype="i1", chunks=(65536,), compression="gzip")


def zip_bomb(path: Path, total: int = 4 * GB, entries: int = 4) -> None:
    chunk = bytes(64 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for i in range(entries):
            folder = "face" if i % 2 == 0 else "background"
            with z.open(f"{folder}/{i}.png", "w", force_zip64=True) as f:
                for _ in range(total // entries // len(chunk)):
                    f.write(chunk)


def file_body(filename: str, content_path: Path):
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()

    def stream():
        yield head
        with open(content_path, "rb") as f:
            while block := f.read(1 << 20):
                yield block
        yield f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image_size\"\r\n\r\n16\r\n".encode()
        yield f"--{BOUNDARY}--\r\n".encode()
    return stream()


def field_flood(total: int = 768 << 20):
    """A tiny file part, then a 'name' field that never ends (until `total` bytes), sent chunked."""
    def stream():
        buf = io.BytesIO()
        np.savez(buf, images=np.zeros((4, 16, 16, 3), np.uint8), labels=np.array([0, 1, 0, 1]))
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.npz\"\r\n\r\n"
               .encode() + buf.getvalue() + b"\r\n")
        yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n".encode()
        block = b"n" * (1 << 20)
        for _ in range(total // len(block)):
            yield block
        yield f"\r\n--{BOUNDARY}--\r\n".encode()
    return stream()


def run_case(label: str, body_factory, upload_bytes: int, work: Path) -> dict:
    data_dir, tmp = work / f"data-{label}", work / f"tmp-{label}"
    data_dir.mkdir()
    tmp.mkdir()
    db = f"sqlite:///{(data_dir / 'debias.db').resolve()}"
    from api.migrate import upgrade
    upgrade(db)
    _, key = make_key(db)
    with live_server_process(db, data_dir, extra_env={"TMPDIR": str(tmp)}) as (base, proc):
        before = status_kib(proc.pid, "VmRSS")
        watch = Watch(proc.pid, data_dir / "uploads", data_dir / "datasets", tmp)
        (data_dir / "uploads").mkdir(exist_ok=True)
        (data_dir / "datasets").mkdir(exist_ok=True)
        watch.start()
        started = time.perf_counter()
        try:
            r = httpx.post(f"{base}/v1/datasets", content=body_factory(), timeout=600,
                           headers={"Authorization": f"Bearer {key}",
                                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            answer = f"{r.status_code} {r.json().get('detail', '')[:110]}"
        except httpx.HTTPError as exc:  # the server may close the connection while we still send
            answer = f"connection closed by the server ({type(exc).__name__})"
        seconds = time.perf_counter() - started
        watch.done.set()
        watch.join()
        peak_rise = (watch.peak_rss_kib - before) / 1024
        alive = httpx.get(f"{base}/healthz").status_code == 200
    return {"case": label, "answer": answer, "seconds": seconds, "peak_mb": peak_rise,
            "disk_mb": max(0, watch.peak_disk - upload_bytes) / 1e6, "upload_mb": upload_bytes / 1e6, "alive": alive}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="debias-hostile-") as folder:
        work = Path(folder)
        npz, h5, zp = work / "bomb.npz", work / "bomb.h5", work / "bomb.zip"
        print("building the hostile files (the zip bomb deflates 4 GB of zeros: about a minute)...", flush=True)
        npz_bomb(npz)
        h5_bomb(h5)
        zip_bomb(zp)
        cases = [
            ("field flood (768 MB 'name' field, chunked)", field_flood, 0),
            (f"npz bomb ({npz.stat().st_size / 1e6:.1f} MB -> 2.1 GB)", lambda: file_body("bomb.npz", npz),
             npz.stat().st_size),
            (f"h5 bomb ({h5.stat().st_size / 1e3:.1f} KB -> 1,000,000 samples)", lambda: file_body("bomb.h5", h5),
             h5.stat().st_size),
            (f"zip bomb ({zp.stat().st_size / 1e6:.1f} MB -> 4.0 GB)", lambda: file_body("bomb.zip", zp),
             zp.stat().st_size),
        ]
        rows = [run_case(label.split(" (")[0].replace(" ", "-"), body, size, work) | {"case": label}
                for label, body, size in cases]
    print(f"{'case':46} {'seconds':>8} {'peak MB':>8} {'disk MB':>8}  alive  answer")
    for r in rows:
        print(f"{r['case']:46} {r['seconds']:8.2f} {r['peak_mb']:8.1f} {r['disk_mb']:8.1f}  {str(r['alive']):5}  "
              f"{r['answer']}")
    print("peak MB: the server's peak resident memory above its level before the request;")
    print("disk MB: peak bytes in its upload, dataset and temporary folders beyond the uploaded file itself.")


if __name__ == "__main__":
    main()
