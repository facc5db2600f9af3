"""The control plane as anyone inside the network finds it: every unsafe call of the stack's
services (Patroni's REST API, etcd's client API, HAProxy's runtime API and stats page), sent
without credentials and with wrong ones from a host of the network that is none of the cluster's
nodes, and the verdict on each answer (``hole``).

Each call would change the cluster if a service obeyed it, yet is chosen to do nothing even then:
Patroni's carry a body that is no JSON (an authenticated caller gets 400 before anything happens;
``POST /reload``, ``POST /sigterm`` and the ``DELETE`` calls read no body: a reload, a no-op off
Windows, cancelling nothing scheduled); etcd's are a transaction on Patroni's leader key whose
comparison never holds (version < 0), a delete of a key no one uses, and a v2 update of that key
only if it exists; HAProxy's are read-only commands of its runtime API and stats page.

A call is refused when (``hole`` returns None):
- no connection opened: ``timed out`` (dropped on the way: the NSG) or ``Connection refused``
  (nothing listens on that port: the service does not serve the network);
- the service refused the TLS handshake (etcd: no client certificate of the stack's CA), answered
  401 or 403 (it authenticated the caller and said no), or an error naming authentication (etcd
  answers a missing token with 400 ``user name is empty``);
- the API is not served at all (a 404 of the server, not of the API: etcd's v2, switched off);
- for HAProxy: no answer of its runtime API or stats page came back (whatever else answered).
Anything else is a hole: the request passed authentication and reached its handler (a Patroni 400
for the broken body included). A probe that could not have found a hole proves nothing: a call to a
port the spec admits from the vantage that never arrived is reported too (``unreached``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Literal

from deployer.spec import StackSpec

#: Ports where a HAProxy stats page or runtime API is often bound, probed beside the spec's own.
ADMIN_PORTS = (1936, 8080, 9000, 9999)
#: Patroni 4.1's unsafe endpoints (``api.py``'s do_POST_*, do_PUT_*, do_PATCH_*, do_DELETE_*), all
#: behind its ``check_access``; not ``POST /mpp``, which Patroni leaves open by design (a Citus
#: coordinator's event, ignored elsewhere; a body that is no JSON is discarded).
PATRONI_CALLS = (("POST", "/restart"), ("POST", "/reload"), ("POST", "/reinitialize"), ("POST", "/switchover"),
                 ("POST", "/failover"), ("POST", "/failsafe"), ("POST", "/citus"), ("POST", "/sigterm"),
                 ("PUT", "/config"), ("PATCH", "/config"), ("DELETE", "/restart"), ("DELETE", "/switchover"))
#: What an etcd refusing an unauthenticated or badly authenticated caller says.
ETCD_AUTH_ERRORS = ("user name is empty", "invalid auth token", "permission denied", "authentication failed")
#: What only HAProxy's runtime API (``show info``) or stats page (CSV or HTML) answers.
HAPROXY_ANSWERS = ("Name: HAProxy", "# pxname,svname", "Statistics Report for HAProxy")
#: The caller's credentials: none, or the right user name with a wrong password (``WRONG_AUTH_ENV``).
Credentials = Literal["none", "wrong"]
#: Environment variable carrying ``user:wrong-password`` to the probe (never on a command line).
WRONG_AUTH_ENV = "PGHA_WRONG_AUTH"


@dataclasses.dataclass(frozen=True)
class Call:
    """One unsafe call to ``node``'s ``port``: ``probe`` is the ``deployer.netprobe`` argument list."""

    service: str
    node: str
    port: int
    what: str
    probe: tuple[str, ...]
    credentials: Credentials = "none"
    #: Only an answer containing one of these is a hole (HAProxy: its own answers); empty: any answer.
    holes_only: tuple[str, ...] = ()
    #: A 404 that is no answer of the API (etcd v2's carry an ``errorCode``) means it is not served.
    may_be_absent: bool = False

    def __str__(self) -> str:
        return f"{self.service} on {self.node}: {self.what} ({'no' if self.credentials == 'none' else 'wrong'} credentials)"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _http(service: str, node: str, credentials: Credentials, method: str, url: str, body: str, **kw) -> Call:
    auth = (WRONG_AUTH_ENV,) if credentials == "wrong" else ()
    port = int(url.split("/")[2].rsplit(":", 1)[1])
    return Call(service, node, port, f"{method} {url}", ("http", method, url, body, *auth), credentials, **kw)


def calls(spec: StackSpec, leader_key: str, unused_key: str) -> list[Call]:
    """Every unsafe call to every node, without credentials and with wrong ones. ``leader_key`` is
    Patroni's leader key in etcd (e.g. ``/service/pgha/leader``); ``unused_key`` a key no one uses."""
    ports = spec.ports
    never = {"compare": [{"key": _b64(leader_key), "target": "VERSION", "result": "LESS", "version": "0"}],
             "success": [{"requestPut": {"key": _b64(leader_key), "value": _b64("probe")}}]}
    found: list[Call] = []
    for node in spec.nodes:
        address = str(node.address)
        for credentials in ("none", "wrong"):
            for method, path in PATRONI_CALLS:
                found.append(_http("Patroni's REST API", node.name, credentials, method,
                                   f"https://{address}:{ports.patroni}{path}", "{"))
            etcd = f"https://{address}:{ports.etcd_client}"
            found += [
                _http("etcd's v3 API", node.name, credentials, "POST", f"{etcd}/v3/kv/txn", json.dumps(never)),
                _http("etcd's v3 API", node.name, credentials, "POST", f"{etcd}/v3/kv/deleterange",
                      json.dumps({"key": _b64(unused_key)})),
                _http("etcd's v2 API", node.name, credentials, "PUT", f"{etcd}/v2/keys{unused_key}?prevExist=true",
                      "value=probe", may_be_absent=True),
            ]
        for port in sorted(set(ports.model_dump().values()) | set(ADMIN_PORTS)):
            found.append(Call("HAProxy's runtime API", node.name, port, f"`show info` to TCP {port}",
                              ("send", address, str(port), "show info"), holes_only=HAPROXY_ANSWERS))
            found.append(_http("HAProxy's stats page", node.name, "none", "GET",
                               f"http://{address}:{port}/haproxy?stats;csv", "", holes_only=HAPROXY_ANSWERS))
    return found


def refusal(answer: dict) -> str:
    """How a call was refused, in words (for a call ``hole`` found refused)."""
    if not answer.get("reachable"):
        return {"timed out": "dropped on the way (timed out: the NSG)",
                "Connection refused": "nothing listens (connection refused)"}.get(answer.get("detail"), answer.get("detail", ""))
    return f"answered {answer['status']}" if "status" in answer else "no answer of the service"


def unreached(call: Call, answer: dict, admitted: bool) -> str | None:
    """The negative control of a probe: a call to a port the NSG ``admitted`` (by the spec) from the
    vantage must have reached the node (an answer, or ``Connection refused`` from it); dropped or
    unroutable, it proved nothing. None when it did; else one sentence."""
    if not admitted or answer.get("reachable") or answer.get("detail") == "Connection refused":
        return None
    return f"{call}: {refusal(answer)}, though the spec admits port {call.port} from the network"


def hole(call: Call, answer: dict) -> str | None:
    """None when ``answer`` (netprobe's, to ``call``) shows the call refused; else one sentence
    naming the service, the node, the call and what came back."""
    if not answer.get("reachable"):
        return None
    text = answer.get("body", answer.get("reply", ""))
    if call.holes_only:
        found = any(marker in text for marker in call.holes_only)
    else:
        status = answer.get("status")
        absent = call.may_be_absent and status == 404 and '"errorCode"' not in text
        found = status is not None and status not in (401, 403) and not absent \
            and not any(error in text for error in ETCD_AUTH_ERRORS)
    if not found:
        return None
    seen = f"{answer['status']} {text[:120]!r}" if "status" in answer else repr(text[:120])
    return f"{call} was not refused: {seen}"
