"""The harness counts what Schemathesis's checks find (so a 0 in `make fuzz` means
something): a 500 and an answer outside the document, on fabricated responses."""

from __future__ import annotations

import json

import requests
import schemathesis

from service.gateway.openapi import build_openapi
from tests.fuzz.run import Tally, judge


def answer(status: int, body: object, content_type: str) -> schemathesis.Response:
    return schemathesis.Response(
        status_code=status,
        headers={"Content-Type": [content_type]},
        content=json.dumps(body).encode(),
        request=requests.Request("POST", "http://gateway/k/register").prepare(),
        elapsed=0.01,
        verify=True,
    )


def case():
    schema = schemathesis.openapi.from_dict(build_openapi())
    return schema["/{apiKey}/register"]["POST"].Case(path_parameters={"apiKey": "k"}, body={})


def test_a_problem_json_answer_of_the_documented_shape_passes():
    tally = Tally()
    problem = {"type": "about:blank", "title": "Bad Request", "status": 400}
    judge(case(), answer(400, problem, "application/problem+json"), tally)
    assert tally.line() == "fuzz_requests=1 server_errors=0 schema_violations=0"


def test_a_body_outside_the_document_is_a_schema_violation():
    tally = Tally()
    judge(case(), answer(400, {"nope": 1}, "application/problem+json"), tally)
    assert tally.line() == "fuzz_requests=1 server_errors=0 schema_violations=1"


def test_a_500_is_a_server_error():
    tally = Tally()
    judge(case(), answer(500, {"title": "oops"}, "application/problem+json"), tally)
    assert tally.server_errors == 1
