"""The probes a vantage runs (``deployer.netprobe``), against servers on loopback: an HTTP request
with and without basic auth, a line sent to a TCP port, a closed port, and a batch of them."""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer import netprobe

AUTH = "patroni:right"


class _Api(BaseHTTPRequestHandler):
    """Answers POST like Patroni: 401 without the right basic auth, else 400 for a body that is no JSON."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(AUTH.encode()).decode():
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"no auth header received")
            return
        try:
            json.loads(body)
            self.send_response(200)
        except ValueError:
            self.send_response(400)
        self.end_headers()

    def log_message(self, *args):
        pass


class _Runtime(socketserver.StreamRequestHandler):
    """Answers ``show info`` like HAProxy's runtime API, then closes."""

    def handle(self):
        if self.rfile.readline().strip() == b"show info":
            self.wfile.write(b"Name: HAProxy\nVersion: 2.6.12-1+deb12u4\n")


@pytest.fixture(scope="module")
def servers():
    api = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    runtime = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Runtime)
    for server in (api, runtime):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield api.server_address[1], runtime.server_address[1]
    for server in (api, runtime):
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_without_with_wrong_and_with_right_credentials(servers, monkeypatch):
    url = f"http://127.0.0.1:{servers[0]}/restart"
    monkeypatch.setenv("WRONG", "patroni:wrong")
    monkeypatch.setenv("RIGHT", AUTH)
    assert netprobe.http_request("POST", url, "{")["status"] == 401
    assert netprobe.http_request("POST", url, "{", "WRONG")["status"] == 401
    assert netprobe.http_request("POST", url, "{", "RIGHT")["status"] == 400
    assert netprobe.http_request("POST", url, "{}", "RIGHT")["status"] == 200


def test_a_closed_port_is_no_answer_saying_why():
    port = _closed_port()
    assert netprobe.http_request("POST", f"http://127.0.0.1:{port}/x", "") == {"reachable": False,
                                                                                "detail": "Connection refused"}
    assert netprobe.send("127.0.0.1", port, "show info") == {"reachable": False, "detail": "Connection refused"}


def test_send_reads_what_the_line_protocol_answers(servers):
    assert netprobe.send("127.0.0.1", servers[1], "show info")["reply"].startswith("Name: HAProxy")
    assert netprobe.send("127.0.0.1", servers[1], "help")["reply"] == ""


def test_batch_runs_every_probe_and_answers_in_order(servers):
    probes = [["send", "127.0.0.1", str(servers[1]), "show info"], ["http", "POST", f"http://127.0.0.1:{servers[0]}/x", "{"],
              ["tcp", "127.0.0.1", str(_closed_port()), "1"]]
    out = subprocess.run([sys.executable, "-m", "deployer.netprobe", "batch"], input=json.dumps(probes),
                         capture_output=True, text=True, timeout=30, check=True)
    answers = json.loads(out.stdout)
    assert [a["reachable"] for a in answers] == [True, True, False]
    assert "HAProxy" in answers[0]["reply"] and answers[1]["status"] == 401
