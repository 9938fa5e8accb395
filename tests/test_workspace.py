"""The ledger and the artifact store: lineage, DataFrames, CSV, concurrent writers, staged writes."""

import multiprocessing
import os

import pytest

from workbench.core.errors import WorkspaceError
from workbench.core.store.atomic import staged
from workbench.core.store.workspace import Workspace


def test_variants_and_measurements_round_trip_with_lineage_and_fingerprint(tmp_path):
    ws = Workspace(tmp_path / "ws")
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    base = ws.add_artifact(source, "model.pt", step="source", params={"kind": "weights"}, format="pytorch")
    child = ws.add_artifact(
        lambda p: p.write_bytes(b"onnx bytes"),
        "model.onnx",
        step="export",
        params={"format": "onnx", "imgsz": 320},
        parent_id=base,
        format="onnx",
    )
    ws.ledger.add_measurement(
        child, "accuracy", {"map50_95": 0.61, "per_class": [{"class": "a"}]}, {"imgsz": 320, "runtime": "onnxruntime"}
    )
    variants = ws.variants()
    assert list(variants["step"]) == ["source", "export"]
    assert variants.loc[1, "parent_id"] == base and variants.loc[1, "params"] == {"format": "onnx", "imgsz": 320}
    assert (ws.root / variants.loc[1, "path"]).read_bytes() == b"onnx bytes"
    assert variants.loc[1, "size_bytes"] == len(b"onnx bytes") and len(variants.loc[1, "sha256"]) == 64
    measurements = ws.measurements("accuracy")
    assert measurements.loc[0, "map50_95"] == 0.61 and measurements.loc[0, "ctx_runtime"] == "onnxruntime"
    assert measurements.loc[0, "variant"] == variants.loc[1, "name"]
    fingerprints = ws.fingerprints()
    assert measurements.loc[0, "fingerprint_id"] in set(fingerprints["id"])
    assert "cpu" in fingerprints.loc[0, "data"] and "libraries" in fingerprints.loc[0, "data"]
    assert [v.id for v in ws.lineage(child)] == [child, base]


def test_typed_records_come_back_from_sql_lookups(tmp_path):
    from workbench.core.store.records import Format, Measurement, Variant

    ws = Workspace(tmp_path / "ws")
    base = ws.add_artifact(lambda p: p.write_bytes(b"w"), "m.pt", step="source", format="pt")  # an old spelling
    kids = [
        ws.add_artifact(
            lambda p, i=i: p.write_bytes(bytes([i])),
            f"c{i}.onnx",
            step="export",
            parent_id=base,
            format="onnx",
            params={"i": i},
        )
        for i in range(3)
    ]
    grandchild = ws.add_artifact(lambda p: p.write_bytes(b"g"), "g.onnx", step="quantize", parent_id=kids[1])
    variant = ws.variant(base)
    assert isinstance(variant, Variant) and variant.format is Format.PYTORCH and variant.is_pytorch
    assert [v.id for v in ws.ledger.children(base)] == kids
    assert [v.id for v in ws.ledger.variants(step="export", newest_first=True)] == kids[::-1]
    assert [v.id for v in ws.ledger.variants(parent_id=None)] == [base]
    assert [v.id for v in ws.lineage(grandchild)] == [grandchild, kids[1], base]
    mid = ws.ledger.add_measurement(kids[0], "latency", {"p50_ms": 2.0}, {"status": "ok"})
    ws.ledger.add_measurement(kids[1], "accuracy", {"map50_95": 0.5}, {"status": "failed"})
    found = ws.ledger.measurements(variant_id=kids[0], kind="latency")
    assert [m.id for m in found] == [mid] and isinstance(found[0], Measurement) and found[0].ok
    assert not ws.ledger.measurements(kind="accuracy")[0].ok
    with pytest.raises(WorkspaceError, match="no variant 999"):
        ws.variant(999)


def test_recording_the_same_artifact_twice_keeps_one_variant(tmp_path):
    ws = Workspace(tmp_path)
    source = tmp_path / "m.pt"
    source.write_bytes(b"same")
    assert ws.add_artifact(source, "m.pt", step="source") == ws.add_artifact(source, "m.pt", step="source")
    assert len(ws.variants()) == 1 and len(list(ws.artifacts.iterdir())) == 1


def test_csv_export_writes_the_three_tables(tmp_path):
    ws = Workspace(tmp_path)
    vid = ws.add_artifact(lambda p: p.write_text("x"), "a.bin", step="source")
    ws.ledger.add_measurement(vid, "latency", {"p50_ms": 1.5}, {"threads": 2})
    written = ws.export_csv()
    assert sorted(p.name for p in written) == ["fingerprints.csv", "measurements.csv", "variants.csv"]
    text = (ws.reports / "measurements.csv").read_text()
    assert "p50_ms" in text and "1.5" in text


def _writer(root, worker, count):
    ws = Workspace(root)
    for i in range(count):
        vid = ws.ledger.add_variant(f"w{worker}-{i}", step="source", params={"i": i})
        ws.ledger.add_measurement(vid, "latency", {"i": i, "worker": worker})


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    Workspace(tmp_path)  # schema first, as a user's first command would
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 60)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ws = Workspace(tmp_path)
    assert len(ws.variants()) == 120 and len(ws.measurements()) == 120
    assert set(ws.variants()["name"]) == {f"w{w}-{i}" for w in range(2) for i in range(60)}


def test_failed_check_keeps_nothing(tmp_path):
    ws = Workspace(tmp_path)

    def reject(path):
        raise ValueError("artifact does not load")

    with pytest.raises(ValueError, match="does not load"):
        ws.add_artifact(lambda p: p.write_text("half"), "bad.onnx", step="export", check=reject)
    assert list(ws.artifacts.iterdir()) == [] and ws.variants().empty


def test_interrupted_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("good")
    with pytest.raises(KeyboardInterrupt), staged(target) as tmp:
        tmp.write_text("half-wri")
        raise KeyboardInterrupt
    assert target.read_text() == "good" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_staged_folder_replaces_an_existing_folder(tmp_path):
    target = tmp_path / "ir"
    target.mkdir()
    (target / "old.xml").write_text("old")
    with staged(target) as tmp:
        tmp.mkdir()
        (tmp / "model.xml").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"] and [p.name for p in target.iterdir()] == ["model.xml"]


def test_workspace_under_a_file_is_refused_and_nothing_is_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WorkspaceError, match="is a file") as info:
        Workspace(blocker / "ws")
    assert "--workspace" in info.value.fix and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_workspace_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(WorkspaceError, match="not writable"):
            Workspace(folder)
    finally:
        folder.chmod(0o700)


def test_damaged_ledger_is_named(tmp_path):
    (tmp_path / "workbench.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorkspaceError, match="cannot be opened"):
        Workspace(tmp_path)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_workspace_on_a_filesystem_that_refuses_writes_is_refused():
    with pytest.raises(WorkspaceError, match="not writable"):
        Workspace("/proc/self/workbench-ws")  # even root cannot create folders here
    assert not os.path.exists("/proc/self/workbench-ws")
