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

    assert typing.get_args(ErrorSchedule) == ERROR_SCHEDULES
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    [option] = [a for a in train._actions if "--error-schedule" in a.option_strings]
    assert tuple(option.choices) == ERROR_SCHEDULES
