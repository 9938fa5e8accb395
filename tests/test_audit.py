"""The hash-chained audit log: a clean chain verifies; every edit, deletion, insertion, move, cut and head change is
found at the right line; payloads are refused; a reopened log continues its chain."""

from __future__ import annotations

import json
import stat
import threading
from datetime import UTC, datetime

import pytest

from workbench.cli import main
from workbench.core.serve.security.audit import (
    AuditError,
    AuditLog,
    PayloadRefused,
    canonical,
    entry_hash,
    verify_audit,
)

CLOCK = lambda: datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)  # noqa: E731


def request(i: int, **extra) -> dict:
    return {
        "who": f"k{i:011x}",
        "name": "ci",
        "action": "infer",
        "method": "POST",
        "path": "/v2/models/demo/infer",
        "status": 200,
        "outcome": "ok",
        "latency_ms": 9.25 + i,
        "client": "10.0.0.1",
        **extra,
    }


@pytest.fixture
def log_path(tmp_path):
    """A log of 4 requests (lines 1..4), closed."""
    path = tmp_path / "serve" / "audit.jsonl"
    with AuditLog(path, clock=CLOCK) as log:
        for i in range(4):
            log.append(request(i))
    return path


def lines(path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def write(path, content: list[str]) -> None:
    path.write_text("".join(content))


def test_a_clean_chain_verifies_and_holds_the_fields(log_path):
    report = verify_audit(log_path)
    assert (report.ok, report.records, report.problem, report.line) == (True, 4, None, None)
    entries = [json.loads(line) for line in lines(log_path)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == "0" * 64
    assert [b["prev"] for b in entries[1:]] == [a["hash"] for a in entries[:-1]]
    assert entries[2]["time"] == "2030-01-02T03:04:05.678+00:00" and entries[2]["latency_ms"] == 11.25
    assert all(entry_hash(e) == e["hash"] for e in entries)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert json.loads(log_path.with_name("audit.jsonl.head").read_text()) == {"seq": 4, "hash": entries[-1]["hash"]}


def _changed(value):
    if isinstance(value, bool) or value is None:
        return "x"
    if isinstance(value, int | float):
        return value + 1
    return value[:-1] + ("0" if value[-1] != "0" else "1")


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_editing_any_field_of_any_line_is_found_at_that_line(log_path, number):
    original = lines(log_path)
    for field in json.loads(original[number - 1]):
        entry = json.loads(original[number - 1])
        entry[field] = _changed(entry[field])
        edited = list(original)
        edited[number - 1] = canonical(entry) + "\n"
        write(log_path, edited)
        report = verify_audit(log_path)
        assert (report.ok, report.line) == (False, number), (field, report)
        assert report.records == number - 1


def test_an_edit_that_keeps_the_json_equal_is_still_found(log_path):
    original = lines(log_path)
    original[1] = original[1].replace(',"status":200', ', "status":200')
    write(log_path, original)
    report = verify_audit(log_path)
    assert (report.ok, report.line) == (False, 2) and "not as written" in report.problem


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link_or_the_head(log_path):
    original = lines(log_path)
    for number, found_at in [(2, 3), (4, 4)]:
        entry = json.loads(original[number - 1])
        entry["status"] = 500
        entry["hash"] = entry_hash(entry)
        edited = list(original)
        edited[number - 1] = canonical(entry) + "\n"
        write(log_path, edited)
        report = verify_audit(log_path)
        assert (report.ok, report.line) == (False, found_at), report


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_a_deleted_line_is_found(log_path, number):
    original = lines(log_path)
    write(log_path, original[: number - 1] + original[number:])
    report = verify_audit(log_path)
    assert (report.ok, report.line) == (False, number), report  # the 4th: the head says 4, the log ends at 3
    assert report.records == number - 1


@pytest.mark.parametrize("first", [1, 2, 3])
def test_two_swapped_lines_are_found(log_path, first):
    original = lines(log_path)
    original[first - 1], original[first] = original[first], original[first - 1]
    write(log_path, original)
    assert verify_audit(log_path).line == first


def test_an_inserted_line_is_found(log_path):
    original = lines(log_path)
    write(log_path, original[:2] + [original[0]] + original[2:])
    report = verify_audit(log_path)
    assert (report.ok, report.line) == (False, 3)


@pytest.mark.parametrize("cut", [1, 10, -1])
def test_a_cut_last_line_is_found(log_path, cut):
    data = log_path.read_bytes()
    log_path.write_bytes(data[:-cut] if cut > 0 else data + b'{"seq":5')
    report = verify_audit(log_path)
    assert (report.ok, report.line) == (False, 5 if cut < 0 else 4), report


def test_a_damaged_missing_or_rolled_back_head_is_found(log_path):
    head = log_path.with_name("audit.jsonl.head")
    good = head.read_text()
    for damage, line in [("not json", None), ('{"seq": 4}', None), (None, None)]:
        if damage is None:
            head.unlink()
        else:
            head.write_text(damage)
        report = verify_audit(log_path)
        assert (report.ok, report.line) == (False, line) and "head" in report.problem
    head.write_text(json.dumps({"seq": 3, "hash": json.loads(lines(log_path)[2])["hash"]}))
    assert verify_audit(log_path).line == 4  # rolled back with the last line: lines past the head
    pinned = json.loads(good)
    head.write_text(json.dumps({**pinned, "hash": "f" * 64}))
    assert verify_audit(log_path).line == 4
    head.write_text(good)
    assert verify_audit(log_path).ok


def test_an_empty_log_without_head_verifies(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    assert verify_audit(path).ok


@pytest.mark.parametrize(
    "extra",
    [{"image": "aGVsbG8="}, {"data": [1, 2]}, {"inputs": "x"}, {"outputs": 1}, {"body": None},
     {"detail": "x" * 513}, {"detail": b"\x89PNG"}, {"detail": [0.1] * 3}, {"detail": {"nested": 1}}],
)  # fmt: skip
def test_records_that_carry_payloads_are_refused_and_nothing_is_written(log_path, extra):
    before = log_path.read_bytes()
    with AuditLog(log_path) as log, pytest.raises(PayloadRefused):
        log.append(request(9, **extra))
    assert log_path.read_bytes() == before


@pytest.mark.parametrize("extra", [{"seq": 1}, {"hash": "x"}, {"prev": "x"}, {"Bad-Name": 1}, {"n": float("nan")}])
def test_reserved_or_malformed_fields_are_refused(log_path, extra):
    with AuditLog(log_path) as log, pytest.raises(ValueError):
        log.append(request(9, **extra))
    assert verify_audit(log_path).records == 4


def test_reopening_continues_the_chain(log_path):
    with AuditLog(log_path) as log:
        entry = log.append(request(5))
    assert entry["seq"] == 5 and entry["prev"] == json.loads(lines(log_path)[3])["hash"]
    assert verify_audit(log_path) == verify_audit(log_path) and verify_audit(log_path).records == 5


@pytest.mark.parametrize("damage", ["cut", "garbage", "head"])
def test_reopening_a_log_with_a_damaged_tail_refuses_to_append(log_path, damage):
    if damage == "cut":
        log_path.write_bytes(log_path.read_bytes()[:-5])
    elif damage == "garbage":
        log_path.write_text(log_path.read_text() + "oops\n")
    else:
        write(log_path, lines(log_path)[:-1])  # the last line removed: the head still says 4
    before = log_path.read_bytes()
    with pytest.raises(AuditError, match="audit verify"):
        AuditLog(log_path)
    assert log_path.read_bytes() == before


def test_a_head_one_line_behind_is_a_crash_between_line_and_head_and_is_repaired(log_path):
    third = json.loads(lines(log_path)[2])
    log_path.with_name("audit.jsonl.head").write_text(json.dumps({"seq": 3, "hash": third["hash"]}))
    assert not verify_audit(log_path).ok
    AuditLog(log_path).close()
    assert verify_audit(log_path).ok


def test_threads_and_two_writers_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    writers = [AuditLog(path, fsync=False), AuditLog(path, fsync=False)]  # a server and the CLI, say

    def append(log, index):
        for i in range(25):
            log.append(request(i, status=index))

    threads = [threading.Thread(target=append, args=(writers[i % 2], i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in writers:
        log.close()
    report = verify_audit(path)
    assert report.ok and report.records == 100


def test_audit_verify_cli_exit_codes(log_path, capsys):
    assert main(["audit", "verify", str(log_path)]) == 0
    assert "4 records" in capsys.readouterr().out
    original = lines(log_path)
    write(log_path, original[:1] + original[2:])
    assert main(["audit", "verify", str(log_path)]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED at line 2" in out and "deleted" in out
    assert main(["audit", "verify", str(log_path.with_name("nothing.jsonl"))]) == 2
