"""The tally of ``deployer.dcs_clients``: which answers of an etcd gateway count as the error
Patroni does not retry (gRPC Unknown) and which as a client turned away (Unavailable, which it
retries on another member), with the bodies etcd 3.4's gateway sends."""

import json

import pytest

from deployer.dcs_clients import GRPC_UNAVAILABLE, GRPC_UNKNOWN, outcome, stream_end

MISSING_CONTENT_TYPE = "OK: HTTP status code 200; transport: missing content-type field"


def test_a_unary_unknown_answer_counts_as_unknown():
    body = json.dumps({"error": MISSING_CONTENT_TYPE, "code": GRPC_UNKNOWN, "message": MISSING_CONTENT_TYPE})
    assert outcome(500, body.encode()) == "unknown"


def test_a_streaming_unknown_answer_counts_as_unknown():
    body = json.dumps({"error": {"grpc_code": GRPC_UNKNOWN, "http_code": 500, "message": MISSING_CONTENT_TYPE}})
    assert outcome(500, body.encode()) == "unknown"


def test_an_unavailable_answer_counts_as_turned_away_which_patroni_retries():
    body = json.dumps({"error": "transport is closing", "message": "transport is closing", "code": GRPC_UNAVAILABLE})
    assert outcome(503, body.encode()) == "turned_away"


@pytest.mark.parametrize("status, body", [
    (504, json.dumps({"error": "context deadline exceeded", "code": 4})),
    (400, json.dumps({"error": {"grpc_code": 3, "message": "bad"}})),
    (502, b"<html>Bad Gateway</html>"),
    (500, json.dumps(["not", "an", "object"])),
])
def test_other_error_answers_count_as_errors_not_unknown(status, body):
    assert outcome(status, body if isinstance(body, bytes) else body.encode()) == "error"


def test_a_2xx_answer_counts_as_ok():
    assert outcome(200, json.dumps({"header": {"revision": "7"}, "count": "0"}).encode()) == "ok"



def test_a_watch_ended_by_an_undrained_stop_counts_as_an_error():
    last = json.dumps({"error": {"grpc_code": 13, "http_code": 500, "http_status": "Internal Server Error",
                                 "message": "server closed the stream without sending trailers"}})
    assert stream_end(b'{"result":{"created":true}}\n' + last.encode()) == "error"


@pytest.mark.parametrize("last", [
    b"",  # nothing read: the stream just ended
    b'{"result":{"header":{"revision":"9"},"created":true}}',
    json.dumps({"error": {"grpc_code": GRPC_UNAVAILABLE, "http_code": 503, "message": "transport is closing"}}).encode(),
])
def test_a_watch_that_just_ended_or_was_unavailable_counts_as_turned_away(last):
    assert stream_end(last) == "turned_away"


def test_a_watch_ended_with_unknown_counts_as_unknown():
    assert stream_end(json.dumps({"error": {"grpc_code": GRPC_UNKNOWN, "message": "x"}}).encode()) == "unknown"
