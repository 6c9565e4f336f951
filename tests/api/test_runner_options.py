from api.services.runners import _stored_schedule


def test_stored_models_keep_the_error_schedule_they_trained_with():
    # Stored before the option existed: the standard classifier's upweight compounded, the DB-VAE's did not.
    assert _stored_schedule("standard", {"error_upweight": 50.0}) == "geometric"
    assert _stored_schedule("dbvae", {"error_upweight": 50.0}) == "constant"
    # Stored with it: as given; None is the engine's default.
    assert _stored_schedule("dbvae", {"error_schedule": "constant"}) == "constant"
    assert _stored_schedule("dbvae", {"error_schedule": None}) is None


def test_every_front_door_offers_the_engines_error_schedules():
    # The CLI and the API spell the choices out (the CLI must not import torch to build its parser).
    import typing

    from api.schemas import ErrorSchedule
    from audit.cli import build_parser
    from audit.training import ERROR_SCHEDULES

    assert typing.get_args(ErrorSchedule) == (*ERROR_SCHEDULES, "auto")
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    [option] = [a for a in train._actions if "--error-schedule" in a.option_strings]
    assert tuple(option.choices) == (*ERROR_SCHEDULES, "auto")  # auto: audit/schedule_choice.py, CLI only


def test_every_front_door_holds_out_the_engines_validation_share():
    from api.schemas import ModelCreate
    from audit.cli import build_parser
    from audit.holdout import MAX_VAL_FRACTION, VAL_FRACTION

    field = ModelCreate.model_fields["val_fraction"]
    assert field.default == VAL_FRACTION
    assert [m.le for m in field.metadata if hasattr(m, "le")] == [MAX_VAL_FRACTION]
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    [option] = [a for a in train._actions if "--val-fraction" in a.option_strings]
    assert option.default == VAL_FRACTION



def test_models_stored_before_the_validation_split_train_on_every_sample():
    # A retry after a lost worker trains a model whose options predate val_fraction as it began: no split.
    from types import SimpleNamespace

    from api.services.runners import stored_train_config
    old = {"epochs": 2, "batch_size": 8, "lr": 5e-4, "seed": 0, "reweight": "both", "strength": 1.0,
           "min_effective_fraction": 0.25}
    model = SimpleNamespace(method="dbvae", density="histogram", options=old)
    assert stored_train_config(model, None).val_fraction == 0.0
    model.options = {**old, "val_fraction": 0.2}
    assert stored_train_config(model, None).val_fraction == 0.2


def test_an_auto_schedule_model_trains_both_runs_and_keeps_one(client, app, alice, settings, tiny_npz_bytes):
    import json

    from api.services.runners import model_dir

    from .conftest import assert_error, run_jobs, upload
    ds = upload(client, alice, tiny_npz_bytes).json()["id"]
    url = f"/v1/datasets/{ds}/models"
    fast = {"batch_size": 8, "latent_dim": 8, "epochs": 2}
    assert_error(client.post(url, headers=alice, json={**fast, "error_schedule": "auto", "val_fraction": 0}), 422,
                 "val_fraction > 0")
    assert_error(client.post(url, headers=alice, json={**fast, "method": "standard", "error_schedule": "auto"}),
                 422, "a standard model has none")
    r = client.post(url, headers=alice, json={**fast, "error_schedule": "auto", "val_fraction": 0.25})
    assert r.status_code == 202, r.text
    model_id = r.json()["resource"]["model_id"]
    assert run_jobs(app) == 1
    model = client.get(f"/v1/models/{model_id}", headers=alice).json()
    assert model["status"] == "ready" and [h["epoch"] for h in model["history"]] == [1, 2]
    choice = json.loads((model_dir(settings, model_id) / "schedule_choice.json").read_text())
    assert choice["chosen"] in ("constant", "geometric")
    kept = json.loads((model_dir(settings, model_id) / "schedules" / choice["chosen"] / "history.json").read_text())
    assert model["history"] == kept
