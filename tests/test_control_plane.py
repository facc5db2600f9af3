"""The control-plane verdict (``deployer.control_plane.hole``) on answers as the services give them:
refusals pass, and every answer showing an unsafe call obeyed fails, naming service, node and call."""

from __future__ import annotations

import pytest

from deployer import control_plane
from deployer.spec import load_spec

SPEC = load_spec()
CALLS = control_plane.calls(SPEC, "/service/pgha/leader", "/pgha-probe/0123")


def call(service: str, what: str, credentials: str = "none", node: str = "pg2") -> control_plane.Call:
    return next(c for c in CALLS if c.service == service and what in c.what and c.credentials == credentials
                and c.node == node)


PATRONI = "Patroni's REST API"
# Patroni 4.1's answers: 401 to a caller without (valid) basic auth, 400 to an authenticated one
# whose body is no JSON (the call passed authentication: a hole).
PATRONI_401 = {"reachable": True, "status": 401, "body": "no auth header received"}
PATRONI_400 = {"reachable": True, "status": 400, "body": ""}
# etcd 3.4's gRPC gateway: the never-true transaction answered (no auth), a missing token refused.
ETCD_TXN_OK = {"reachable": True, "status": 200,
               "body": '{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437",'
                       '"revision":"41","raft_term":"3"}}'}
ETCD_NO_USER = {"reachable": True, "status": 400, "body": '{"error":"etcdserver: user name is empty",'
                                                          '"message":"etcdserver: user name is empty","code":3}'}
ETCD_V2_OFF = {"reachable": True, "status": 404, "body": "404 page not found\n"}
ETCD_V2_ON = {"reachable": True, "status": 404,
              "body": '{"errorCode":100,"message":"Key not found","cause":"/pgha-probe","index":12}'}
HAPROXY_SHOW_INFO = {"reachable": True, "reply": "Name: HAProxy\nVersion: 2.6.12-1+deb12u1\nRelease_date: 2023/12/16\n"}
POSTGRES_REPLY = {"reachable": True, "reply": "EFATAL\x00C0A000\x00Munsupported frontend protocol 26728.26975\x00\x00"}
STATS_CSV = {"reachable": True, "status": 200, "body": "# pxname,svname,qcur,qmax,scur,smax,slim,stot\nprimary,pg1,0,0"}
MONITOR_503 = {"reachable": True, "status": 503, "body": "<html><body><h1>503 Service Unavailable</h1>\nNo server"}
DROPPED = {"reachable": False, "detail": "timed out"}
CLOSED = {"reachable": False, "detail": "Connection refused"}


@pytest.mark.parametrize("service, what, credentials, answer", [
    (PATRONI, "POST https://10.0.1.5:8008/restart", "none", PATRONI_401),
    (PATRONI, "PATCH https://10.0.1.5:8008/config", "wrong", PATRONI_401),
    (PATRONI, "DELETE https://10.0.1.5:8008/switchover", "none", {"reachable": True, "status": 403, "body": ""}),
    ("etcd's v3 API", "/v3/kv/txn", "none", DROPPED),
    ("etcd's v3 API", "/v3/kv/txn", "none", ETCD_NO_USER),
    ("etcd's v3 API", "/v3/kv/deleterange", "wrong", CLOSED),
    ("etcd's v2 API", "/v2/keys", "none", ETCD_V2_OFF),
    ("HAProxy's runtime API", "to TCP 5000", "none", POSTGRES_REPLY),
    ("HAProxy's runtime API", "to TCP 1936", "none", CLOSED),
    ("HAProxy's stats page", ":8404/", "none", MONITOR_503),
], ids=["patroni-401", "patroni-wrong-401", "patroni-403", "etcd-dropped", "etcd-auth", "etcd-closed", "v2-off",
        "runtime-postgres-answers", "runtime-closed", "stats-503"])
def test_refusals_pass(service, what, credentials, answer):
    assert control_plane.hole(call(service, what, credentials), answer) is None


@pytest.mark.parametrize("service, what, credentials, answer, named", [
    (PATRONI, "POST https://10.0.1.5:8008/switchover", "none", PATRONI_400, "POST https://10.0.1.5:8008/switchover"),
    (PATRONI, "PUT https://10.0.1.5:8008/config", "wrong", PATRONI_400, "wrong credentials"),
    ("etcd's v3 API", "/v3/kv/txn", "none", ETCD_TXN_OK, "etcd's v3 API on pg2"),
    ("etcd's v3 API", "/v3/kv/deleterange", "wrong", ETCD_TXN_OK, "deleterange"),
    ("etcd's v2 API", "/v2/keys", "none", ETCD_V2_ON, "Key not found"),
    ("HAProxy's runtime API", "to TCP 9999", "none", HAPROXY_SHOW_INFO, "`show info` to TCP 9999"),
    ("HAProxy's stats page", ":8404/", "none", STATS_CSV, "HAProxy's stats page on pg2"),
], ids=["patroni-no-auth", "patroni-any-password", "etcd-open", "etcd-wrong-token-ignored", "v2-on",
        "runtime-on-tcp", "stats-page"])
def test_an_obeyed_call_is_a_hole_naming_it(service, what, credentials, answer, named):
    found = control_plane.hole(call(service, what, credentials), answer)
    assert found is not None and named in found and "was not refused" in found


def test_every_node_gets_every_unsafe_call_both_ways():
    patroni = {(c.node, c.what.split()[0], c.what.rsplit("/", 1)[1], c.credentials) for c in CALLS if c.service == PATRONI}
    assert len(patroni) == len(SPEC.nodes) * len(control_plane.PATRONI_CALLS) * 2
    etcd = [c for c in CALLS if c.service.startswith("etcd") and c.node == "pg1"]
    assert {c.port for c in etcd} == {SPEC.ports.etcd_client} and {c.credentials for c in etcd} == {"none", "wrong"}
    runtime = {c.port for c in CALLS if c.service == "HAProxy's runtime API" and c.node == "pg3"}
    assert runtime >= set(SPEC.ports.model_dump().values()) | set(control_plane.ADMIN_PORTS)


def test_the_etcd_transaction_could_never_write():
    """The comparison is version < 0: never true, so the put in ``success`` never runs."""
    import base64
    import json

    txn = json.loads(call("etcd's v3 API", "/v3/kv/txn").probe[3])
    [compare] = txn["compare"]
    assert (compare["target"], compare["result"], compare["version"]) == ("VERSION", "LESS", "0")
    assert base64.b64decode(compare["key"]) == b"/service/pgha/leader" and "failure" not in txn


def test_refusal_says_which_kind():
    assert "NSG" in control_plane.refusal(DROPPED)
    assert "nothing listens" in control_plane.refusal(CLOSED)
    assert control_plane.refusal(PATRONI_401) == "answered 401"


def test_a_dropped_call_to_a_port_the_spec_admits_proves_nothing():
    patroni = call(PATRONI, "POST https://10.0.1.5:8008/restart")
    assert "though the spec admits port 8008" in control_plane.unreached(patroni, DROPPED, admitted=True)
    unroutable = {"reachable": False, "detail": "Network is unreachable"}
    assert control_plane.unreached(patroni, unroutable, admitted=True) is not None
    assert control_plane.unreached(patroni, CLOSED, admitted=True) is None, "the node itself answered"
    assert control_plane.unreached(patroni, PATRONI_401, admitted=True) is None
    etcd = call("etcd's v3 API", "/v3/kv/txn")
    assert control_plane.unreached(etcd, DROPPED, admitted=False) is None, "the NSG drops it, as the spec says"
