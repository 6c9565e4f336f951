"""The API against its own OpenAPI document (schemathesis, every check): generated requests, valid and
not, never get a server error or a response the document does not describe. Deterministic and bounded:
a fixed number of derandomized examples per operation and mode, on SQLite and on PostgreSQL.

Hypothesis drives schemathesis's strategies directly (not its pytest plugin, which does not support
pytest 9), so one test covers every operation of the app's schema.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .conftest import upload

EXAMPLES = 20  # per operation and generation mode
# A schema-valid upload is any bytes, which is almost never a dataset: refusing it (415/422) is correct,
# so "valid data is accepted" cannot hold for this one operation; every other check still runs on it.
# The training options hold rules across fields that JSON Schema cannot state (error_epoch < epochs when an
# error set is on; mix_groups needs error_upweight > 0): a schema-valid body may break them, and the 422
# naming the rule is correct (tests/api/test_api_hostile.py covers those refusals).
NOT_CHECKED = {"POST /v1/datasets": [positive_data_acceptance],
               **{op: [positive_data_acceptance] for op in ("POST /v1/datasets/{dataset_id}/audits",
                                                            "POST /v1/datasets/{dataset_id}/models",
                                                            "POST /v1/datasets/{dataset_id}/model-sets")}}


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_conforms_to_the_schema(app, client, alice, tiny_npz_bytes, mode):
    # Something to find: id 1 exists for alice (a dataset), so generated ids hit real rows as well as misses.
    assert upload(client, alice, tiny_npz_bytes).status_code == 201
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers=alice, excluded_checks=NOT_CHECKED.get(operation.label))

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without parameters has nothing to negate
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
