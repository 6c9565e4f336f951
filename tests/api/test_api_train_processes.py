"""DEBIAS_TRAIN_PROCESSES: a service training job trained in two gloo processes (the job's own and a helper)."""
import json

from api.services.runners import model_dir

from .conftest import run_jobs, upload


def test_a_training_job_trains_in_two_processes(app, client, alice, settings, tiny_npz_bytes):
    settings.train_processes = 2
    ds = upload(client, alice, tiny_npz_bytes).json()
    r = client.post(f"/v1/datasets/{ds['id']}/models", headers=alice,
                    json={"method": "dbvae", "epochs": 2, "batch_size": 8, "latent_dim": 8})
    assert r.status_code == 202, r.text
    model_id = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 1
    model = client.get(f"/v1/models/{model_id}", headers=alice).json()
    assert model["status"] == "ready", model
    config = json.loads((model_dir(settings, model_id) / "config.json").read_text())
    assert config["training"]["world_size"] == 2 and config["epochs_completed"] == 2
