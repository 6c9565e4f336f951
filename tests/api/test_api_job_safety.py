"""Jobs that cannot hurt the service: memory refused up front, children that die alone, no races, no debris."""
import multiprocessing
import os
import signal
import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from api.app import create_app
from api.tables import Audit, Dataset, Job, TrainedModel
from api.worker import Worker

from .conftest import TRAIN_FAST, run_jobs, upload

HUGE = {"epochs": 1, "batch_size": 4096, "latent_dim": 1024}


def _count(app, table, **equal) -> int:
    with app.state.sessions() as session:
        q = select(func.count()).select_from(table)
        for column, value in equal.items():
            q = q.where(getattr(table, column) == value)
        return session.scalar(q)


def _entries(settings, kind: str) -> list[str]:
    folder = settings.data_dir / kind
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- A: a job's memory is estimated and refused at creation ------------------------------------------


def test_the_probe_job_is_refused_before_anything_is_stored(client, app, alice, tiny_npz_bytes, settings):
    # The security probe: 512px images, batch_size=4096, latent_dim=1024 grew a worker to 21.9 GB.
    ds = upload(client, alice, tiny_npz_bytes, image_size=512).json()
    for url, body in ((f"/v1/datasets/{ds['id']}/models", {"method": "dbvae", **HUGE}),
                      (f"/v1/datasets/{ds['id']}/audits", {"training": HUGE})):
        r = client.post(url, headers=alice, json=body)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        for named in ("GiB", "limit of 8.0 GiB", "batch_size=4096", "latent_dim", "image_size",
                      "DEBIAS_MAX_JOB_MEMORY"):
            assert named in detail, (named, detail)
    assert _count(app, Job) == _count(app, TrainedModel) == _count(app, Audit) == 0
    assert _entries(settings, "models") == _entries(settings, "audits") == []


def test_refusal_names_a_batch_size_that_fits_and_that_size_is_accepted(client, app, alice, tiny_npz_bytes,
                                                                       settings):
    settings.max_job_memory = int(1.2 * 2**30)  # just above the fixed cost of any job
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": "dbvae", **HUGE})
    assert r.status_code == 422
    fits = int(r.json()["detail"].split("lower batch_size (to ")[1].split(" ")[0])
    assert 2 <= fits < 4096
    assert _count(app, Job) == 0
    ok = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                     json={"method": "dbvae", **HUGE, "batch_size": fits})
    assert ok.status_code == 202, ok.text


def test_several_training_processes_share_the_job_limit(client, app, alice, tiny_npz_bytes, settings):
    settings.max_job_memory = int(1.5 * 2**30)
    ds = upload(client, alice, tiny_npz_bytes).json()
    body = {"method": "dbvae", **TRAIN_FAST}
    assert client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json=body).status_code == 202
    # Two processes each hold what one does: together over the limit when one alone fits.
    settings.train_processes = 2
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json=body)
    assert r.status_code == 422 and "in each of 2 processes (DEBIAS_TRAIN_PROCESSES)" in r.json()["detail"]


def test_evaluation_and_audit_of_a_model_are_refused_over_the_limit(client, app, alice, tiny_npz_bytes, settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    model = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": "dbvae", **TRAIN_FAST})
    assert run_jobs(app) == 1
    model_id = model.json()["resource"]["model_id"]
    settings.max_job_memory = 2**30  # below what merely loading the engine takes
    jobs_before = _count(app, Job)
    r = client.post(f"/v1/models/{model_id}/evaluations", headers=alice, json={"dataset_id": ds["id"]})
    assert r.status_code == 422 and "evaluating model" in r.json()["detail"]
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"model_id": model_id})
    assert r.status_code == 422 and "DEBIAS_MAX_JOB_MEMORY" in r.json()["detail"]
    assert "image_size" in r.json()["detail"]
    assert _count(app, Job) == jobs_before and _count(app, Audit) == 0


# --- A/B: a job's process dies alone, fails once, and the API keeps answering -------------------------


def _assert_failed_once_and_cleaned(client, app, alice, settings, job_id: int, model_id: int) -> dict:
    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert "not retried" in job["error"] and "batch_size (now 4096)" in job["error"], job["error"]
    assert client.get("/healthz").status_code == 200                  # the API process is alive
    assert run_jobs(app) == 0                                          # and the job is not tried again
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).json()["attempts"] == 1
    assert client.get(f"/v1/models/{model_id}", headers=alice).json()["status"] == "failed"
    assert not (settings.data_dir / "models" / str(model_id)).exists()
    return job


def _job_processes() -> list:
    return [p for p in multiprocessing.active_children() if p.name.startswith("debias-job-")]


def _wait_for_job_process(client, alice, job_id: int):
    for _ in range(1200):
        job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
        if job["status"] == "running" and job["progress"] > 1 and _job_processes():
            return _job_processes()[0]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never started training: {job}")


def test_a_job_killed_by_the_kernel_fails_cleanly_and_is_not_retried(client, app, alice, tiny_npz_bytes,
                                                                    settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                    json={"method": "dbvae", **HUGE, "epochs": 200})
    job_id, model_id = r.json()["job"]["id"], r.json()["resource"]["model_id"]
    # The default set-up of the probe: the worker runs inside the API process.
    with TestClient(create_app(settings, start_worker=True)) as embedded:
        child = _wait_for_job_process(embedded, alice, job_id)
        os.kill(child.pid, signal.SIGKILL)  # what the OOM killer does
        for _ in range(600):
            if embedded.get(f"/v1/jobs/{job_id}", headers=alice).json()["status"] != "running":
                break
            time.sleep(0.05)
        assert embedded.get("/healthz").status_code == 200
    job = _assert_failed_once_and_cleaned(client, app, alice, settings, job_id, model_id)
    assert "killed by signal 9 (SIGKILL: out of memory?)" in job["error"]


def test_an_embedded_worker_puts_its_job_back_when_the_api_stops(client, app, alice, tiny_npz_bytes, settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                    json={"method": "standard", **TRAIN_FAST, "epochs": 500})
    job_id = r.json()["job"]["id"]
    with TestClient(create_app(settings, start_worker=True)) as embedded:
        child = _wait_for_job_process(embedded, alice, job_id)
    assert not child.is_alive()
    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "queued" and job["attempts"] == 0 and "shut down" in job["message"]
    client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)


def test_a_job_out_of_address_space_fails_cleanly_and_is_not_retried(client, app, alice, tiny_npz_bytes,
                                                                    settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": "dbvae", **HUGE})
    job_id, model_id = r.json()["job"]["id"], r.json()["resource"]["model_id"]
    # 200 MB more than the child maps at start: its batches of 4096 cannot be allocated.
    worker = Worker(settings, app.state.sessions, worker_id="w-rlimit", address_space=200 << 20)
    assert worker.run_once()
    job = _assert_failed_once_and_cleaned(client, app, alice, settings, job_id, model_id)
    assert job["error"].startswith("the job ran out of memory (")
    assert "allocate" in job["error"] or "could not create a primitive" in job["error"], job["error"]


# --- C: deleting a dataset while a model is created on it: one or the other ------------------------------


def test_delete_and_create_on_a_dataset_never_both_succeed(client, app, alice, tiny_npz_bytes, settings):
    outcomes = []
    for _ in range(20):
        ds = upload(client, alice, tiny_npz_bytes).json()
        start, results = threading.Barrier(2), {}

        def call(name, method, url, **kw):
            start.wait()
            results[name] = client.request(method, url, headers=alice, **kw)

        threads = [threading.Thread(target=call, args=("delete", "DELETE", f"/v1/datasets/{ds['id']}")),
                   threading.Thread(target=call, args=("create", "POST", f"/v1/datasets/{ds['id']}/models"),
                                    kwargs={"json": {"method": "standard", **TRAIN_FAST}})]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deleted, created = results["delete"], results["create"]
        outcomes.append((deleted.status_code, created.status_code))
        assert (deleted.status_code, created.status_code) in ((204, 404), (409, 202)), \
            (deleted.text, created.text)
        if created.status_code == 202:
            assert "in use by job(s)" in deleted.json()["detail"]
            model_id = created.json()["resource"]["model_id"]
            with app.state.sessions() as session:  # the model's dataset is still there
                assert session.get(TrainedModel, model_id).dataset_id == ds["id"]
            client.post(f"/v1/jobs/{created.json()['job']['id']}/cancel", headers=alice)
            assert client.delete(f"/v1/datasets/{ds['id']}", headers=alice).status_code == 204
        else:
            assert f"dataset {ds['id']} not found" in created.json()["detail"]
        assert _count(app, TrainedModel, dataset_id=ds["id"]) == 0
    assert _count(app, Dataset) == 0 and _count(app, TrainedModel) == 0
    assert not (settings.data_dir / "models").exists() or _entries(settings, "models") == []
    print("delete/create outcomes:", sorted(set(outcomes)))


def test_a_job_whose_model_row_is_gone_fails_with_a_clear_message(client, app, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": "standard", **TRAIN_FAST})
    job_id, model_id = r.json()["job"]["id"], r.json()["resource"]["model_id"]
    with app.state.sessions() as session:  # behind the service's back, as an operator might
        session.execute(delete(TrainedModel).where(TrainedModel.id == model_id))
        session.commit()
    assert run_jobs(app) == 1
    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "failed" and f"model {model_id} was deleted" in job["error"]
    assert "AttributeError" not in job["error"]


# --- D: staging debris of killed jobs is swept -------------------------------------------------------------


def _debris(settings, audit_id: int) -> list:
    folder = settings.data_dir / "audits"
    stage = folder / f".{audit_id}.partial-k1ll3d"
    stage.mkdir(parents=True)
    (stage / "report.json").write_text("{half")
    old = folder / f".{audit_id}.old-k1ll3d"
    old.mkdir()
    return [stage, old]


def test_a_retried_audit_sweeps_what_its_killed_attempt_left(client, app, alice, tiny_npz_bytes, settings):
    from datetime import timedelta

    from sqlalchemy import update

    from api.db import utcnow
    from api.services import jobs as job_service

    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    job_id, audit_id = r.json()["job"]["id"], r.json()["resource"]["audit_id"]
    with app.state.sessions() as session:  # a worker took it and was killed while writing figures
        job_service.claim(session, "killed-worker")
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        session.commit()
    debris = _debris(settings, audit_id)
    assert run_jobs(app) == 1
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).json()["status"] == "succeeded"
    assert not any(p.exists() for p in debris)
    assert _entries(settings, "audits") == [str(audit_id)]
    # Deleting the dataset takes its audits' debris too.
    debris = _debris(settings, audit_id)
    assert client.delete(f"/v1/datasets/{ds['id']}", headers=alice).status_code == 204
    assert _entries(settings, "audits") == [] and _entries(settings, "models") == []


def test_worker_start_up_sweeps_debris_but_not_a_running_jobs(client, app, alice, tiny_npz_bytes, settings):
    from api.services import jobs as job_service

    ds = upload(client, alice, tiny_npz_bytes).json()
    running = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST}).json()
    with app.state.sessions() as session:
        job_service.claim(session, "another-live-worker")  # writing its figures right now
    dead = _debris(settings, 999)           # an audit long gone
    live = _debris(settings, running["resource"]["audit_id"])
    Worker(settings, app.state.sessions).sweep()
    assert not any(p.exists() for p in dead)
    assert all(p.exists() for p in live)


# --- E: cancelling a queued job cancels what it would have made ----------------------------------------------


def test_cancelling_a_queued_audit_cancels_its_audit_and_model(client, app, alice, tiny_npz_bytes, settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST}).json()
    job = client.post(f"/v1/jobs/{r['job']['id']}/cancel", headers=alice)
    assert job.status_code == 200 and job.json()["status"] == "cancelled"
    assert client.get(f"/v1/audits/{r['resource']['audit_id']}", headers=alice).json()["status"] == "cancelled"
    assert client.get(f"/v1/models/{r['resource']['model_id']}", headers=alice).json()["status"] == "cancelled"
    assert run_jobs(app) == 0
    assert _entries(settings, "audits") == [] and _entries(settings, "models") == []
