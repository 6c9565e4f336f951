"""The server log: one line per job start, end and failure, naming the job, its kind and its dataset."""
import logging

from .conftest import TRAIN_FAST, run_jobs, upload


def _lines(caplog, job_id: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "debias.worker"
            and r.getMessage().startswith(f"job {job_id} ")]


def test_job_start_and_success_are_logged(client, app, alice, tiny_npz_bytes, caplog):
    caplog.set_level(logging.INFO, logger="debias.worker")
    ds = upload(client, alice, tiny_npz_bytes).json()
    job_id = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                         json={"method": "standard", **TRAIN_FAST}).json()["job"]["id"]
    assert run_jobs(app) == 1
    started, ended = _lines(caplog, job_id)
    assert started.startswith(f"job {job_id} started: train, dataset {ds['id']}, attempt 1, worker ")
    assert ended.startswith(f"job {job_id} succeeded: train, dataset {ds['id']}, in ") and ended.endswith(" s")


def test_job_failure_is_logged_with_its_error(client, app, alice, tiny_npz_bytes, settings, caplog):
    caplog.set_level(logging.INFO, logger="debias.worker")
    ds = upload(client, alice, tiny_npz_bytes).json()
    job_id = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                         json={"method": "standard", **TRAIN_FAST}).json()["job"]["id"]
    for f in (settings.data_dir / "datasets" / str(ds["id"])).rglob("*"):  # its files vanish under the job
        if f.is_file():
            f.unlink()
    assert run_jobs(app) == 1
    failed = _lines(caplog, job_id)[-1]
    error = client.get(f"/v1/jobs/{job_id}", headers=alice).json()["error"]
    assert failed.startswith(f"job {job_id} failed: train, dataset {ds['id']}, after ")
    assert failed.endswith(": " + " ".join(error.split())) and "\n" not in failed
