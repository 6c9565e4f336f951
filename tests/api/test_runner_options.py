from api.services.runners import _stored_schedule


def test_stored_models_keep_the_error_schedule_they_trained_with():
    # Stored before the option existed: the standard classifier's upweight compounded, the DB-VAE's did not.
    assert _stored_schedule("standard", {"error_upweight": 50.0}) == "geometric"
    assert _stored_schedule("dbvae", {"error_upweight": 50.0}) == "constant"
    # Stored with it: as given; None is the engine's default.
    assert _stored_schedule("dbvae", {"error_schedule": "constant"}) == "constant"
    assert _stored_schedule("dbvae", {"error_schedule": None}) is None
