"""The job queue: exclusive claims, requeue of stale jobs, cancel, failures that leave nothing behind."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from api.db import utcnow
from api.services import jobs as job_service
from api.tables import Audit, AuditScore, Job, TrainedModel
from api.worker import Worker

from .conftest import TRAIN_FAST, run_jobs, upload


def _enqueue(app, n: int) -> list[int]:
    with app.state.sessions() as session:
        from api.auth import create_key
        owner, _ = create_key(session, "queue-owner")
        ids = [job_service.enqueue(session, owner.id, "train", {"model_id": -1}, None, 3).id for _ in range(n)]
        session.commit()
    return ids


def test_two_workers_never_claim_the_same_job(app):
    ids = _enqueue(app, 40)
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def claim_all(worker_id: str) -> None:
        start.wait()
        mine = claimed.setdefault(worker_id, [])
        with app.state.sessions() as session:
            while (job := job_service.claim(session, worker_id)) is not None:
                mine.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [j for jobs in claimed.values() for j in jobs]
    assert sorted(everything) == ids            # each job claimed exactly once
    with app.state.sessions() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(ids))).all()
        owners = {r.id: r.worker_id for r in rows}
    for worker_id, jobs in claimed.items():
        assert all(owners[j] == worker_id for j in jobs)
        assert all(r.attempts == 1 and r.status == "running" for r in rows)


def test_stale_job_is_requeued_then_fails_after_max_attempts(app):
    [job_id] = _enqueue(app, 1)
    with app.state.sessions() as session:
        for attempt in (1, 2, 3):
            job = job_service.claim(session, f"dead-worker-{attempt}")
            assert job.id == job_id and job.attempts == attempt
            # The worker dies: no heartbeat for longer than stale_after.
            session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
            session.commit()
            assert job_service.requeue_stale(session, timedelta(seconds=60)) == [job_id]
            job = session.get(Job, job_id, populate_existing=True)
            if attempt < 3:
                assert job.status == "queued" and job.worker_id is None and "stopped heart-beating" in job.message
        assert job.status == "failed" and "gave up after 3 attempts" in job.error


def test_live_job_is_not_requeued_and_lost_job_stops_its_worker(app):
    [job_id] = _enqueue(app, 1)
    with app.state.sessions() as session:
        job_service.claim(session, "alive")
        assert job_service.requeue_stale(session, timedelta(seconds=60)) == []
        job_service.heartbeat(session, job_id, "alive", 50, "half way")
        session.execute(update(Job).where(Job.id == job_id).values(worker_id="someone-else"))
        session.commit()
        with pytest.raises(job_service.JobLost):
            job_service.heartbeat(session, job_id, "alive", 60, "still going")


def test_requeued_audit_runs_to_completion_on_another_worker(client, app, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    job_id = r.json()["job"]["id"]
    with app.state.sessions() as session:
        job_service.claim(session, "crashed-worker")
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        session.commit()
    assert run_jobs(app) == 1                  # requeues, then runs it
    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "succeeded" and job["attempts"] == 2 and job["worker_id"] == "test-worker"


def test_cancel_queued_and_finished(client, app, alice, tiny_npz_bytes):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice, json={"method": "standard", **TRAIN_FAST})
    job_id, model_id = r.json()["job"]["id"], r.json()["resource"]["model_id"]
    job = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice).json()
    assert job["status"] == "cancelled"
    assert run_jobs(app) == 0
    assert client.get(f"/v1/models/{model_id}", headers=alice).json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_cancel_running_job_stops_it_and_keeps_nothing(client, app, alice, tiny_npz_bytes, settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice,
                    json={"training": {**TRAIN_FAST, "epochs": 50}})
    job_id, audit_id = r.json()["job"]["id"], r.json()["resource"]["audit_id"]
    model_id = r.json()["resource"]["model_id"]
    worker = Worker(settings, app.state.sessions, worker_id="w-cancel")
    runner = threading.Thread(target=worker.run_once)
    runner.start()
    # Ask for the cancel once training is under way.
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
        if job["status"] == "running" and job["progress"] > 1:
            break
        threading.Event().wait(0.05)
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice).json()["cancel_requested"]
    runner.join(timeout=60)
    assert not runner.is_alive()
    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "cancelled" and job["finished_at"]
    assert client.get(f"/v1/audits/{audit_id}", headers=alice).json()["status"] == "cancelled"
    assert client.get(f"/v1/models/{model_id}", headers=alice).json()["status"] == "cancelled"
    assert not (settings.data_dir / "audits" / str(audit_id)).exists()
    assert not (settings.data_dir / "models" / str(model_id)).exists()


def test_failed_job_stores_its_error_and_no_results(client, app, alice, tiny_npz_bytes, settings):
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/audits", headers=alice, json={"training": TRAIN_FAST})
    job_id, audit_id = r.json()["job"]["id"], r.json()["resource"]["audit_id"]
    # The dataset's files vanish under the job (a disk failure, an operator's mistake).
    for f in (settings.data_dir / "datasets" / str(ds["id"])).iterdir():
        if f.is_file():
            f.unlink()
        else:
            for g in f.iterdir():
                g.unlink()
    assert run_jobs(app) == 1
    job = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "failed" and "files of dataset" in job["error"]
    audit = client.get(f"/v1/audits/{audit_id}", headers=alice).json()
    assert audit["status"] == "failed" and audit["report"] is None
    assert client.get(f"/v1/audits/{audit_id}/anomalies", headers=alice).status_code == 409
    with app.state.sessions() as session:
        assert session.scalar(select(AuditScore.sample_index).where(AuditScore.audit_id == audit_id)) is None
        assert session.get(TrainedModel, audit["model_id"]).status == "failed"
        assert session.get(Audit, audit_id).n_samples is None
    assert not (settings.data_dir / "audits" / str(audit_id)).exists()
