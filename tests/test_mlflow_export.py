"""`workbench export-mlflow`: variants as MLflow runs, read back with MLflow's own client."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from workbench.cli import main
from workbench.core.errors import ConfigError
from workbench.core.measure.measure import measure
from workbench.core.measure.plan import MeasurePlan
from workbench.core.models.export import ExportConfig, export
from workbench.core.models.sources import open_source, record_source
from workbench.core.services.mlflow_variants import export_to_mlflow, step_params
from workbench.core.store.workspace import Workspace

QUICK = MeasurePlan(seconds=0.05, warmup_s=0, warmup_runs=1, min_runs=3, parity=True, parity_images=4)
HISTORY = [{"epoch": e, "map50_95": 0.1 * e, "box_loss": 1.5 - 0.01 * e} for e in range(40)]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_dataset):
    """The demo source, its ONNX export at 128 measured, and a fine-tuned child recorded with a long history."""
    workspace = Workspace(tmp_path_factory.mktemp("mlflow-ws"))
    base = record_source(workspace, open_source("demo"))
    onnx = export(workspace, base, ExportConfig(format="onnx", imgsz=128))
    measured = measure(workspace, onnx, QUICK, tiny_dataset.data_yaml)
    tuned = workspace.ledger.add_variant(
        "tuned.pt", step="finetune", parent_id=onnx, params={"epochs": 1, "train": {"lr0": 0.01}, "history": HISTORY}
    )
    return SimpleNamespace(workspace=workspace, base=base, onnx=onnx, tuned=tuned, measured=measured)


@pytest.fixture(scope="module")
def exported(study, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # MLflow must not write ./mlruns where it is started
    try:
        result = export_to_mlflow(study.workspace)
        assert not os.listdir(".")
    finally:
        os.chdir(cwd)
    client = MlflowClient(result.tracking_uri)
    runs = {int(r.data.tags["workbench.variant_id"]): r for r in client.search_runs([result.experiment_id])}
    return SimpleNamespace(result=result, client=client, runs=runs)


def _artifacts(client, run_id: str, path=None) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path)}


def test_each_variant_is_one_run_with_lineage_tags_nested_under_its_parent(study, exported):
    result, runs = exported.result, exported.runs
    ws = study.workspace
    assert result.tracking_uri == f"sqlite:///{ws.root / 'mlflow.db'}" and (ws.root / "mlflow.db").is_file()
    assert set(runs) == {study.base, study.onnx, study.tuned} == set(result.created) and not result.updated
    assert {v: r.info.run_id for v, r in runs.items()} == result.runs
    onnx, variant = runs[study.onnx], ws.variant(study.onnx)
    tags = onnx.data.tags
    assert onnx.info.run_name == variant.name and tags["workbench.step"] == "export"
    assert tags["workbench.sha256"] == variant.sha256 and tags["workbench.format"] == "onnx"
    assert tags["workbench.parent_id"] == str(study.base) and tags["workbench.workspace"] == str(ws.root)
    assert tags["workbench.lineage"] == f"{study.base}>{study.onnx}"
    assert runs[study.tuned].data.tags["workbench.lineage"] == f"{study.base}>{study.onnx}>{study.tuned}"
    assert tags["mlflow.parentRunId"] == runs[study.base].info.run_id
    assert runs[study.tuned].data.tags["mlflow.parentRunId"] == onnx.info.run_id
    assert "mlflow.parentRunId" not in runs[study.base].data.tags
    [fingerprint] = [f["data"] for f in ws.ledger.fingerprints() if f["id"] == variant.fingerprint_id]
    assert tags["workbench.cpu"] == fingerprint["cpu"]["model"]
    assert tags["workbench.version.torch"] == fingerprint["libraries"]["torch"]


def test_params_are_the_steps_parameters_and_a_long_history_goes_to_a_json_artifact(study, exported):
    ws, client = study.workspace, exported.client
    export_params = exported.runs[study.onnx].data.params
    assert export_params["export.imgsz"] == "128" and export_params["export.format"] == "onnx"
    assert len(export_params) == len(ws.variant(study.onnx).params)
    tuned = exported.runs[study.tuned]
    assert tuned.data.params == {"finetune.epochs": "1", "finetune.train.lr0": "0.01"}
    assert "finetune.history" in tuned.data.tags["workbench.params_omitted"]
    folder = client.download_artifacts(tuned.info.run_id, "params.json")
    assert json.loads(open(folder).read())["history"] == HISTORY
    assert step_params(ws.variant(study.onnx))[1] == []


def test_metrics_are_the_ledgers_figures(study, exported):
    ws, metrics = study.workspace, exported.runs[study.onnx].data.metrics
    found = {m.kind: m for m in ws.ledger.measurements(ids=study.measured)}
    latency, accuracy, parity = found["latency"], found["accuracy"], found["parity"]
    prefix = f"latency.onnxruntime.fp32.128.t{latency.context['threads']}"
    for figure in ("p50_ms", "p90_ms", "p99_ms"):
        assert metrics[f"{prefix}.{figure}"] == latency.metrics[figure]
    data = accuracy.context["data_yaml"].split("/")[-2]
    for figure in ("map50_95", "map50", "precision", "recall"):
        assert metrics[figure] == metrics[f"accuracy.{data}.val.128.{figure}"] == accuracy.metrics[figure]
    assert metrics["parity.onnxruntime.fp32.128.match_rate"] == parity.metrics["match_rate"]
    assert metrics["parity.onnxruntime.fp32.128.pass"] == float(parity.metrics["verdict"] == "pass")
    assert exported.runs[study.base].data.metrics == {}  # nothing measured on the source: nothing borrowed
    history = exported.client.get_metric_history(exported.runs[study.onnx].info.run_id, f"{prefix}.p50_ms")
    assert [point.step for point in history] == [latency.id]


def test_artifacts_are_the_model_file_and_card_and_missing_ones_are_said(study, exported):
    client, runs = exported.client, exported.runs
    onnx_run = runs[study.onnx].info.run_id
    name = study.workspace.artifact_path(study.onnx).name
    assert {"model", "model_card.md"} <= _artifacts(client, onnx_run)
    assert _artifacts(client, onnx_run, "model") == {f"model/{name}"}
    card = open(client.download_artifacts(onnx_run, "model_card.md")).read()
    assert study.workspace.variant(study.onnx).sha256 in card
    assert [(s.variant_id, s.what) for s in exported.result.skipped] == [(study.tuned, "artifact")]
    assert runs[study.tuned].data.tags["workbench.artifact"].startswith("skipped: the variant has no artifact")


def test_the_runs_are_searchable_by_step(exported):
    found = exported.client.search_runs(
        [exported.result.experiment_id], filter_string="tags.`workbench.step` = 'export'"
    )
    assert [r.data.tags["workbench.step"] for r in found] == ["export"]


def test_exporting_again_updates_the_same_runs_with_new_measurements(study, exported):
    ws, client = study.workspace, exported.client
    [latency] = [m for m in ws.ledger.measurements(ids=study.measured) if m.kind == "latency"]
    newer = ws.ledger.add_measurement(study.onnx, "latency", {**latency.metrics, "p50_ms": 1.25}, latency.context)
    again = export_to_mlflow(ws)
    assert again.runs == exported.result.runs and not again.created
    assert sorted(again.updated) == sorted(again.runs)
    assert len(client.search_runs([again.experiment_id])) == 3
    key = f"latency.onnxruntime.fp32.128.t{latency.context['threads']}.p50_ms"
    run_id = again.runs[study.onnx]
    assert client.get_run(run_id).data.metrics[key] == 1.25
    assert [p.step for p in client.get_metric_history(run_id, key)] == [latency.id, newer]
    assert _artifacts(client, run_id, "model") == _artifacts(exported.client, exported.result.runs[study.onnx], "model")


def test_an_artifact_above_the_limit_is_skipped_with_its_reason(study, exported):
    from mlflow.tracking import MlflowClient

    uri = exported.result.tracking_uri  # the same store, another experiment: a run of its own
    result = export_to_mlflow(study.workspace, experiment="limits", variant_ids=[study.onnx], max_artifact_mb=1)
    assert result.experiment_id != exported.result.experiment_id and result.created == [study.onnx]
    tag = MlflowClient(uri).get_run(result.runs[study.onnx]).data.tags["workbench.artifact"]
    size = study.workspace.variant(study.onnx).size_bytes / 1e6
    assert tag == f"skipped: {size:.1f} MB is above max_artifact_mb 1"
    assert [s.reason for s in result.skipped] == [tag]
    assert "model" not in _artifacts(MlflowClient(uri), result.runs[study.onnx])


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"variant_ids": [1, 99]}, "no variant 99"),
        ({"tracking_uri": "s3://bucket/runs"}, "'s3'"),
        ({"tracking_uri": "/plain/path"}, "'(none)'"),
        ({"tracking_uri": "http:///runs"}, "names no host"),
        ({"tracking_uri": "sqlite:////no/such/folder/x.db"}, "no folder /no/such/folder"),
        ({"tracking_uri": "ledger"}, "is the workspace's own ledger"),
        ({"experiment": " "}, "experiment name is empty"),
        ({"max_artifact_mb": -1}, "max_artifact_mb must be >= 0"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(study, tmp_path, kwargs, names):
    kwargs = {"tracking_uri": f"sqlite:///{tmp_path / 'x.db'}", **kwargs}
    if kwargs["tracking_uri"] == "ledger":
        kwargs["tracking_uri"] = f"sqlite:///{study.workspace.ledger.path}"
    with pytest.raises(ConfigError) as caught:
        export_to_mlflow(study.workspace, **kwargs)
    assert names in caught.value.problem and caught.value.fix
    assert not os.listdir(tmp_path)


def test_a_file_that_is_no_mlflow_store_is_refused_clearly(study, tmp_path):
    not_a_store = tmp_path / "notes.db"
    not_a_store.write_text("plain text, not SQLite")
    with pytest.raises(ConfigError) as caught:
        export_to_mlflow(study.workspace, tracking_uri=f"sqlite:///{not_a_store}")
    assert f"cannot use the tracking store sqlite:///{not_a_store}" in caught.value.problem
    assert not_a_store.read_text() == "plain text, not SQLite"


def test_the_cli_refuses_an_unknown_variant_and_writes_nothing(study, tmp_path, capsys):
    store = tmp_path / "cli.db"
    args = ["export-mlflow", "--workspace", str(study.workspace.root), "--tracking-uri", f"sqlite:///{store}"]
    assert main([*args, "--variants", f"{study.onnx},99"]) == 2
    assert "no variant 99" in capsys.readouterr().err and not store.exists()
    with pytest.raises(SystemExit):
        main([*args, "--variants", "one,two"])
    assert main(["export-mlflow", "--workspace", str(tmp_path / "none")]) == 2 and not (tmp_path / "none").exists()


def test_the_cli_writes_the_store_with_mlflow_telemetry_off_and_no_network(study, tmp_path):
    """In a fresh process without pytest's or a CI's variables, which MLflow itself takes as 'no telemetry'."""
    store = tmp_path / "cli.db"
    script = (
        "import json, sys\n"
        "from workbench.cli import main\n"
        f"rc = main(['export-mlflow', '--workspace', {str(study.workspace.root)!r}, '--tracking-uri', "
        f"'sqlite:///{store}', '--variants', '{study.base},{study.onnx}', '--no-artifacts'])\n"
        "from mlflow.telemetry import client, utils\n"
        "print(json.dumps({'rc': rc, 'telemetry': client.get_telemetry_client() is not None, "
        "'ci': utils._IS_IN_CI_ENV_OR_TESTING}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "CI", "MLFLOW_DISABLE_TELEMETRY")}
    env.pop("DO_NOT_TRACK", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"rc": 0, "telemetry": False, "ci": False}
    assert f"store:  sqlite:///{store}" in done.stdout and store.is_file()
    assert f"browse: mlflow ui --backend-store-uri sqlite:///{store}" in done.stdout
    assert "2 runs in experiment 'deploy-workbench'" in done.stdout
