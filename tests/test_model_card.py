"""The model card and the deployment record: every figure as the ledger holds it, nothing invented, no secrets."""

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import workbench
from workbench.cli import main
from workbench.core.doctor.findings import Diagnosis, Finding, Verdict
from workbench.core.errors import ConfigError, WorkspaceError
from workbench.core.measure.measure import measure
from workbench.core.measure.plan import MeasurePlan
from workbench.core.models.export import ExportConfig, export
from workbench.core.models.sources import open_source, record_source
from workbench.core.report.documentation.card_markdown import when
from workbench.core.report.documentation.deployment_record import deployment_record
from workbench.core.report.documentation.model_card import model_card, write_card
from workbench.core.serve.monitoring.drift import DriftMonitor, DriftReport, FeatureDrift, ReferenceStats
from workbench.core.serve.security.audit import AuditLog, verify_audit
from workbench.core.serve.security.keys import KeyInfo
from workbench.core.serve.security.principal import Role
from workbench.core.serve.service.limits import Limits
from workbench.core.store.workspace import Workspace

QUICK = MeasurePlan(seconds=0.05, warmup_s=0, warmup_runs=1, min_runs=3, parity=True, parity_images=4)
API_KEY = "wbk_0123456789ab_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"  # the form KeyStore.add hands out
PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHb0jZk3wKxXo1b2\n-----END PRIVATE KEY-----\n"


def _alert(workspace, variant_id: int, window: int, looks_like: str = "dark") -> int:
    """Record a drift alert the way a served model's monitor does (`DriftMonitor.record_alert`)."""
    monitor = DriftMonitor(ReferenceStats((), (), (), {}, "val[:24]"), window=8)
    drifted = FeatureDrift("brightness", "input", "smd", -1.25, 0.8, 0.0004, 41.0, 118.0, True, looks_like)
    return monitor.record_alert(workspace, variant_id, DriftReport(window, 8, {"brightness": drifted}))


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_dataset):
    """The demo model as source, its ONNX export at 128 measured (latency, accuracy, parity) and one drift alert."""
    workspace = Workspace(tmp_path_factory.mktemp("card-ws"))
    source = open_source("demo")
    base = record_source(workspace, source)
    onnx = export(workspace, base, ExportConfig(format="onnx", imgsz=128))
    measure(workspace, onnx, QUICK, tiny_dataset.data_yaml)
    _alert(workspace, onnx, 0)
    return SimpleNamespace(workspace=workspace, base=base, onnx=onnx, names=source.names, data=tiny_dataset)


def _one(workspace, variant_id: int, kind: str):
    [found] = [m for m in workspace.ledger.measurements(variant_id=variant_id, kind=kind) if m.ok]
    return found


def test_the_card_holds_the_lineage_and_each_figure_as_the_ledger_holds_it(study):
    ws, onnx = study.workspace, study.onnx
    card = model_card(ws, onnx)
    text = card.markdown()
    variant = ws.variant(onnx)
    assert [(s["id"], s["step"]) for s in card.lineage] == [(study.base, "source"), (onnx, "export")]
    assert "imgsz=128" in card.lineage[-1]["params"] and "source=demo" in card.lineage[0]["params"]
    assert f"#{study.base} **source**" in text and f"#{onnx} **export**" in text
    details = card.details
    assert details["sha256"] == variant.sha256 and details["size_bytes"] == variant.size_bytes
    assert details["classes"] == study.names and details["input_size"].startswith("128 x 128")
    assert variant.sha256 in text and ", ".join(f"{k}: {v}" for k, v in study.names.items()) in text

    accuracy, latency, parity = (_one(ws, onnx, k) for k in ("accuracy", "latency", "parity"))
    [a], [lat], [p] = card.metrics["accuracy"], card.metrics["latency"], card.metrics["parity"]
    assert (a["map50_95"], a["map50"], a["images"]) == tuple(
        accuracy.metrics[k] for k in ("map50_95", "map50", "images")
    )
    assert (a["data_yaml"], a["split"], a["imgsz"]) == (str(study.data.data_yaml), "val", 128)
    assert (lat["p50_ms"], lat["p99_ms"]) == (latency.metrics["p50_ms"], latency.metrics["p99_ms"])
    assert (lat["runtime"], lat["threads"], lat["batch"]) == ("onnxruntime", latency.context["threads"], 1)
    cpu = {f["id"]: f["data"] for f in ws.ledger.fingerprints()}[latency.fingerprint_id]["cpu"]["model"]
    assert lat["cpu"] == cpu and (p["verdict"], p["parent_id"]) == (parity.metrics["verdict"], study.base)
    row = f"| {accuracy.metrics['map50_95']:.4f} | {accuracy.metrics['map50']:.4f} |"
    assert row in text and f"| {latency.metrics['p50_ms']:.2f} | {latency.metrics['p99_ms']:.2f} |" in text
    assert f"| {accuracy.id} | {when(accuracy.created_at)} |" in text and f"| {cpu} |" in text
    assert f"validated only on `{study.data.data_yaml}`" in text and "shapes-s0-800x200-320px" in text
    assert "not evaluated on any other data" in text and "Ethical considerations" in text


def test_a_variant_without_measurements_says_not_measured(study):
    card = model_card(study.workspace, study.base)
    text = card.markdown()
    assert not card.metrics["accuracy"] and not card.metrics["latency"] and not card.metrics["parity"]
    for title in ("Accuracy", "Latency", "Parity with its parent"):
        assert f"{title}: not measured." in text
    assert "Accuracy: not measured for this variant." in card.limitations
    assert "map50_95" not in json.dumps(card.metrics)  # no figure borrowed from a child or a card
    assert "Drift alerts: none recorded" in text and card.details["input_size"].endswith("trained at 320")


def test_drift_alerts_and_diagnoses_in_the_ledger_appear_in_the_card(study):
    ws, onnx = study.workspace, study.onnx
    finding = Finding("channel_order", Verdict.CAUSE, "RGB and BGR swapped", fix="feed BGR", cause="channels")
    Diagnosis.of("accuracy", [finding], subject="demo.onnx").record(ws, onnx)
    card = model_card(ws, onnx)
    alerts = ws.ledger.measurements(variant_id=onnx, kind="drift_alert")
    drift = card.evaluation["drift"]
    assert drift["count"] == len(alerts) >= 1 and drift["shifts"]["dark"] == len(alerts)
    assert drift["latest"]["measurement_id"] == alerts[-1].id
    text = card.markdown()
    assert f"Drift alerts: {len(alerts)} recorded (shifts named: dark x{len(alerts)})" in text
    assert alerts[-1].metrics["sentence"] in text and "it looks like 'dark'" in text
    assert "Most likely cause: RGB and BGR swapped" in text and "Top cause: channel_order; fix: feed BGR" in text


def test_the_deployment_record_takes_what_serving_hands_over(study, tmp_path):
    ws, onnx = study.workspace, study.onnx
    server = SimpleNamespace(  # the attributes of a RunningServer that the record takes
        url="https://127.0.0.1:8443", ca_file=tmp_path / "tls" / "ca.pem", audit=tmp_path / "audit.jsonl"
    )
    with AuditLog(server.audit) as log:
        log.append({"event": "infer", "key_id": "0123456789ab"})
        log.append({"event": "infer", "key_id": "0123456789ab"})
    key = KeyInfo(
        "0123456789ab", "app", Role.INFERRER, "2026-12-01T00:00:00+00:00", "2027-03-01T00:00:00+00:00", None, "active"
    )
    before = ws.ledger.measurements(variant_id=onnx, kind="drift_alert")
    started = datetime.now(UTC)  # after every alert so far: only the next one is recorded since
    an_hour_earlier = (started - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    deployment = {
        **{k: getattr(server, k) for k in ("url", "ca_file", "audit")},
        "protections": ("tls", "api keys", "audit"),
        "audit_verification": asdict(verify_audit(server.audit)),
        "keys": [key],
        "limits": Limits(),
        "started_at": an_hour_earlier,  # in another time zone: every alert so far is after it
        "tls_version": "TLSv1.3",
    }
    everything = deployment_record(ws, onnx, deployment=deployment)
    assert everything.drift["count"] == len(before)
    later = _alert(ws, onnx, 99, "lowres")
    record = deployment_record(ws, onnx, deployment={**deployment, "started_at": started})
    assert record.drift["count"] == 1 and record.drift["latest"]["measurement_id"] == later
    text = record.markdown()
    assert "https://127.0.0.1:8443" in text and "| 0123456789ab | app | inferrer |" in text
    assert "intact, 2 records" in text and "TLSv1.3" in text and "- **rate_per_s**: 50.0" in text
    latency = _one(ws, onnx, "latency")
    assert record.latency[0]["p50_ms"] == latency.metrics["p50_ms"] and f"| {latency.metrics['p50_ms']:.2f} |" in text
    assert "shifts named: lowres x1" in text and record.model["sha256"] == ws.variant(onnx).sha256
    path = record.save(tmp_path / "deployment.md")
    assert path.read_text() == text and API_KEY not in text


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        ({"notes": f"client key {API_KEY}"}, "looks like a workbench API key"),
        ({"keys": [{"key_id": API_KEY, "role": "admin"}]}, "looks like a workbench API key"),
        ({"notes": PEM}, "looks like a PEM private key"),
        ({"notes": PEM.replace("PRIVATE", "OPENSSH PRIVATE")}, "looks like a PEM private key"),
        ({"url": "https://admin:hunter2@10.0.0.5:8443"}, "a URL with a password"),
        ({"api_key": "0123456789ab"}, "unknown deployment key(s): api_key"),
        ({"keys": [{"key_id": "0123456789ab", "secret": "x"}]}, "unknown field(s) in deployment['keys']: secret"),
        ({"notes": b"\x00" * 32}, "raw bytes"),
        ({"started_at": "2026-12-03T10:00:00"}, "has no time zone"),
        ({"manifest_verified": "yes"}, "must be true or false"),
    ],
)
def test_the_deployment_record_refuses_secrets_unknown_keys_and_wrong_kinds(study, deployment, message):
    with pytest.raises(ConfigError) as raised:
        deployment_record(study.workspace, study.onnx, deployment=deployment)
    assert message in raised.value.problem
    assert API_KEY not in str(raised.value) and "hunter2" not in str(raised.value) and "MC4CAQ" not in str(raised.value)


def test_cards_are_written_atomically_as_markdown_or_json(study, tmp_path):
    card = model_card(study.workspace, study.onnx)
    md = write_card(card, tmp_path / "out" / "card.md")
    data = json.loads(card.save(tmp_path / "out" / "card.json").read_text())
    assert md.read_text() == card.markdown() and data["metrics"] == json.loads(json.dumps(card.as_dict()["metrics"]))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["card.json", "card.md"]  # no staging file left
    with pytest.raises(ConfigError, match="is a folder"):
        card.save(tmp_path)
    with pytest.raises(WorkspaceError, match="no variant 999"):
        model_card(study.workspace, 999)
    assert workbench.model_card is model_card and workbench.deployment_record is deployment_record


def test_the_cli_writes_the_card_and_refuses_an_unknown_variant_without_writing(study, tmp_path, capsys):
    root, out = str(study.workspace.root), tmp_path / "card.md"
    assert main(["card", str(study.onnx), "--workspace", root, "--out", str(out)]) == 0
    written, fresh = out.read_text().splitlines(), model_card(study.workspace, study.onnx).markdown().splitlines()
    assert written[2].startswith("_Generated ") and written[:2] + written[3:] == fresh[:2] + fresh[3:]
    assert f"card: {out}" in capsys.readouterr().out
    assert main(["card", str(study.base), "--workspace", root]) == 0
    assert "Accuracy: not measured." in capsys.readouterr().out
    missing = tmp_path / "missing.md"
    assert main(["card", "999", "--workspace", root, "--out", str(missing)]) == 2
    assert "no variant 999" in capsys.readouterr().err and not missing.exists()
    assert main(["card", "no-such-name", "--workspace", root, "--out", str(missing)]) == 2
    assert "0 variants are named 'no-such-name'" in capsys.readouterr().err and not missing.exists()
    nowhere = tmp_path / "nowhere"
    assert main(["card", "1", "--workspace", str(nowhere), "--out", str(missing)]) == 2
    assert "no workspace at" in capsys.readouterr().err and not nowhere.exists() and not missing.exists()
