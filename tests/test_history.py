"""The operation history: round trip through files, and the outcome rules (``classify``)."""

import socket
import threading

import psycopg
import pytest

from load.history import CLIENTS, SEQUENTIAL_CLIENTS, HistoryWriter, Op, classify, process_path, read_history


def op(key, start, outcome="ok", **kw):
    return Op("write", key, start, start + 0.01, outcome, **kw)


def test_round_trip_across_process_files_sorted_by_start(tmp_path):
    a = [op("a-1", 1.0, server="10.0.1.4", timeline=2), op("a-2", 3.0, "unknown", error="OperationalError: lost")]
    b = [op("b-1", 2.0, "fail", error="ReadOnlySqlTransaction: read-only"), Op("read", "a-1", 4.0, 4.5, "ok", "10.0.1.5")]
    for name, ops in (("history-1.jsonl", a), ("history-2.jsonl", b)):
        with HistoryWriter(tmp_path / name) as writer:
            for o in ops:
                writer.write(o)
    assert read_history(tmp_path) == sorted(a + b, key=lambda o: o.start)
    assert read_history([tmp_path / "history-2.jsonl"]) == b


def test_each_line_is_on_disk_as_soon_as_written(tmp_path):
    writer = HistoryWriter(process_path(tmp_path))
    writer.write(op("k-1", 1.0))
    assert read_history(tmp_path) == [op("k-1", 1.0)]  # no close: flushed per line
    writer.close()


def test_concurrent_writers_in_one_process_never_interleave_lines(tmp_path):
    writer = HistoryWriter(tmp_path / "h.jsonl")
    threads = [threading.Thread(target=lambda t=t: [writer.write(op(f"{t}-{i}", i, error="x" * 500))
                                                       for i in range(200)]) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert len({o.key for o in read_history(tmp_path)}) == 1600


def test_a_torn_last_line_is_skipped_but_a_corrupt_line_is_an_error(tmp_path):
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:
        writer.write(op("k-1", 1.0))
    with open(path, "a") as f:
        f.write('{"kind": "write", "key": "k-2"')  # the writer was killed mid-line
    assert [o.key for o in read_history(path)] == ["k-1"]
    with open(path, "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="h.jsonl:2"):
        read_history(path)


def test_op_rejects_an_outcome_outside_ok_fail_unknown():
    with pytest.raises(ValueError, match="outcome"):
        op("k", 1.0, "maybe")


def refused() -> psycopg.OperationalError:
    """A real 'connection refused' from psycopg, on a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(f"host=127.0.0.1 port={port} connect_timeout=2")
    return info.value


def test_connection_refused_before_sending_is_a_failure():
    assert classify(refused(), sent=False) == "fail"


@pytest.mark.parametrize("exc, sent, expected", [
    (psycopg.errors.ConnectionTimeout("connection timeout expired"), False, "fail"),
    (psycopg.errors.CannotConnectNow("the database system is starting up"), False, "fail"),
    (TimeoutError("no answer"), False, "fail"),
    (psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), True, "fail"),
    (psycopg.errors.UndefinedTable('relation "drill_history" does not exist'), True, "fail"),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), True, "fail"),
    (psycopg.OperationalError("server closed the connection unexpectedly"), True, "unknown"),
    (psycopg.errors.ConnectionFailure("connection failure"), True, "unknown"),
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True, "unknown"),
    (psycopg.errors.CrashShutdown("terminating connection because of crash of another server process"), True, "unknown"),
    (psycopg.InterfaceError("the connection is lost"), True, "unknown"),
    (TimeoutError("no answer"), True, "unknown"),
])
def test_classify(exc, sent, expected):
    assert classify(exc, sent) == expected


def test_real_psycopg_errors_carry_the_sqlstate_classify_reads():
    assert psycopg.errors.ReadOnlySqlTransaction("x").sqlstate == "25006"
    assert psycopg.errors.ConnectionFailure("x").sqlstate.startswith("08")
    assert refused().sqlstate is None and classify(refused(), sent=True) == "unknown"


def test_client_defaults_to_locust_and_old_lines_without_it_still_read(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"kind":"write","key":"k-1","start":1.0,"end":1.5,"outcome":"ok","server":"10.0.1.4",'
                    '"error":null,"timeline":2}\n')
    (old,) = read_history(path)
    assert old == Op("write", "k-1", 1.0, 1.5, "ok", "10.0.1.4", None, 2) and old.client == "locust"
    assert CLIENTS == ("locust", "sequential", "sequential-short-timeout", "direct")
    assert SEQUENTIAL_CLIENTS == ("sequential", "sequential-short-timeout")


def test_client_round_trips_and_is_validated_like_kind_and_outcome(tmp_path):
    ops = [op(f"k-{c}", 1.0, client=c) for c in CLIENTS]
    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        for o in ops:
            writer.write(o)
    assert [o.client for o in read_history(tmp_path)] == list(CLIENTS)
    with pytest.raises(ValueError, match="Op client must be one of locust, sequential, "
                                         "sequential-short-timeout, direct, not 'frontend'"):
        op("k", 1.0, client="frontend")
    with pytest.raises(ValueError, match="kind"):
        Op("delete", "k", 1.0, 1.1, "ok")
