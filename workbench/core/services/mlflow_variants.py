"""The workspace's variants as MLflow runs (params, metrics, lineage tags, artifacts), browsable with `mlflow ui`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import ConfigError
from ..progress import ProgressFn, emit
from ..store.records import Measurement, Variant
from ..store.workspace import LEDGER_NAME

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

DEFAULT_EXPERIMENT = "deploy-workbench"
STORE_NAME = "mlflow.db"
ARTIFACTS_FOLDER = "mlflow-artifacts"  # next to a SQLite store: never MLflow's default ./mlruns in the working dir
SCHEMES = ("sqlite", "file", "http", "https")
PARAM_VALUE_LIMIT = 500  # longer values (a training history) go to params.json; MLflow itself allows 6000
VARIANT_TAG, WORKSPACE_TAG, WORKSPACE_ID_TAG = "workbench.variant_id", "workbench.workspace", "workbench.workspace_id"
ACCURACY_FIGURES = ("map50_95", "map50", "precision", "recall")
LATENCY_FIGURES = ("p50_ms", "p90_ms", "p99_ms")
PARITY_FIGURES = ("match_rate", "mean_iou", "max_abs_diff", "cosine")
LIBRARIES = ("torch", "ultralytics", "onnxruntime", "openvino", "nncf")  # tagged as workbench.version.<name>

# MLflow 3 reads these when it is imported (mlflow/telemetry/utils.py, is_telemetry_disabled): either one turns its
# telemetry client off. DO_NOT_TRACK counts there only as the word "true"; a user's own value of it is kept.
TELEMETRY_SWITCH, DO_NOT_TRACK = "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"


@dataclass(frozen=True)
class Skipped:
    """Something of a variant that was not exported, and why."""

    variant_id: int
    what: str
    reason: str


@dataclass
class MlflowExport:
    """Where the runs went: the store, the experiment, one run per variant, what was created, updated, skipped."""

    tracking_uri: str
    experiment_id: str
    runs: dict[int, str] = field(default_factory=dict)
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def browse(self) -> str:
        """The command that shows the runs in a browser."""
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"


def export_to_mlflow(
    workspace: Workspace,
    *,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    variant_ids: Iterable[int] | None = None,
    artifacts: bool = True,
    max_artifact_mb: float = 200,
    progress: ProgressFn | None = None,
) -> MlflowExport:
    """Write the workspace's variants as MLflow runs, parents first; running it again updates the same runs.

    Args:
        workspace: a `Workspace`.
        tracking_uri: an MLflow tracking store (sqlite:, file:, http(s):); default sqlite:///<workspace>/mlflow.db.
        experiment: the MLflow experiment, created when missing.
        variant_ids: the variants to export (default: all of them).
        artifacts: log each variant's file or folder and its model card.
        max_artifact_mb: artifacts larger than this are left out (a tag on the run says so).
        progress: called once per variant.
    Returns:
        the store, the experiment id, the run of each variant and what was created, updated or skipped.
    Raises:
        ConfigError: an unknown variant, an unsupported tracking URI (or the ledger itself), an empty experiment
            name or a negative size limit (nothing is written then); a store MLflow cannot open.
    """
    uri = check_tracking_uri(tracking_uri, workspace.root)
    chosen = _chosen_variants(workspace, variant_ids)
    if not experiment or not experiment.strip():
        raise ConfigError("the MLflow experiment name is empty", "pass a name, e.g. --experiment deploy-workbench")
    if max_artifact_mb < 0:
        raise ConfigError(f"max_artifact_mb must be >= 0, got {max_artifact_mb}", "pass 0 or more megabytes")
    client, experiment_id = _open_store(uri, experiment)
    result = MlflowExport(uri, experiment_id)
    known = _existing_runs(client, result.experiment_id, workspace.root)
    machines = {f["id"]: f["data"] for f in workspace.ledger.fingerprints()}
    for done, variant in enumerate(chosen):
        emit(progress, "mlflow export", done, len(chosen), variant.name)
        run_id = known.get(variant.id)
        if run_id is None:
            run_id = _create_run(client, result.experiment_id, workspace, variant)
            result.created.append(variant.id)
        else:
            result.updated.append(variant.id)
        known[variant.id] = result.runs[variant.id] = run_id
        _fill_run(client, run_id, workspace, variant, known, machines)
        if artifacts:
            _log_artifacts(client, run_id, workspace, variant, max_artifact_mb, result)
        else:
            client.set_tag(run_id, "workbench.artifact", "not exported (artifacts=False)")
    emit(progress, "mlflow export", len(chosen), len(chosen), "done")
    return result


# -- checking the inputs ---------------------------------------------------------------------------------------------


def default_tracking_uri(root: Path) -> str:
    """The SQLite store inside the workspace, as an absolute sqlite:/// URI."""
    return f"sqlite:///{(Path(root) / STORE_NAME).resolve()}"


def check_tracking_uri(uri: str | None, root: Path) -> str:
    """The tracking URI to use (the workspace's SQLite store when None); ConfigError for one the export refuses."""
    if uri is None:
        return default_tracking_uri(root)
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        raise ConfigError(
            f"tracking URI {uri!r} has scheme {parsed.scheme or '(none)'!r}; the export writes to {', '.join(SCHEMES)}",
            f"pass e.g. {default_tracking_uri(root)} or http://127.0.0.1:5000 (an `mlflow server`)",
        )
    if parsed.scheme in ("http", "https") and not parsed.hostname:
        raise ConfigError(f"tracking URI {uri!r} names no host", "pass e.g. http://127.0.0.1:5000")
    if parsed.scheme == "sqlite":
        database = Path(uri.removeprefix("sqlite:///"))
        if not uri.startswith("sqlite:///") or not database.name:
            raise ConfigError(f"tracking URI {uri!r} names no database file", f"pass e.g. {default_tracking_uri(root)}")
        if not database.resolve().parent.is_dir():
            raise ConfigError(f"no folder {database.resolve().parent} for {uri}", "create it, or pick another path")
        if database.resolve() == (Path(root) / LEDGER_NAME).resolve():  # MLflow would add its tables to the ledger
            raise ConfigError(f"{uri} is the workspace's own ledger", f"pass e.g. {default_tracking_uri(root)}")
        return f"sqlite:///{database.resolve()}"  # absolute: MLflow resolves relative ones against the cwd
    return uri


def _chosen_variants(workspace: Workspace, variant_ids: Iterable[int] | None) -> list[Variant]:
    """The variants to export, parents first (a parent is always recorded before its children: lower id)."""
    every = {v.id: v for v in workspace.ledger.variants()}
    if variant_ids is None:
        return [every[i] for i in sorted(every)]
    wanted = sorted({int(i) for i in variant_ids})
    unknown = [i for i in wanted if i not in every]
    if unknown:
        raise ConfigError(
            f"no variant {', '.join(map(str, unknown))} in {workspace.ledger.path}",
            f"pick from the ledger's variants: {', '.join(map(str, sorted(every))) or 'none recorded yet'}",
        )
    if not wanted:
        raise ConfigError("no variants given to export", "pass variant ids, or none for all of them")
    return [every[i] for i in wanted]


# -- MLflow ----------------------------------------------------------------------------------------------------------


def _mlflow_client_class():
    """MLflow's `MlflowClient`, with MLflow's telemetry off before MLflow is first imported."""
    os.environ[TELEMETRY_SWITCH] = "true"
    os.environ.setdefault(DO_NOT_TRACK, "true")
    try:
        from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError("MLflow is not installed", "pip install 'deploy-workbench[sweep]'") from exc
    if get_telemetry_client() is not None:  # MLflow was imported before the switch was set: drop its client
        set_telemetry_client()
    return MlflowClient


def _open_store(uri: str, experiment: str):
    """A client on the store and the experiment's id (made when missing); ConfigError for a store MLflow can't open."""
    client_class = _mlflow_client_class()  # MLflow imported here, after its telemetry switch
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError  # MLflow's SQL stores raise these for a file that is no database

    try:
        client = client_class(tracking_uri=uri)  # opens (or makes) the store
        return client, _experiment_id(client, experiment, uri)
    except (MlflowException, SQLAlchemyError) as exc:
        raise ConfigError(
            f"MLflow cannot use the tracking store {uri}: {str(exc).splitlines()[0][:300]}",
            "pass --tracking-uri of an MLflow store (a new sqlite:///path.db is made), or start the server it names",
        ) from exc


def _experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage != "active":
            raise ConfigError(
                f"experiment {name!r} is deleted in {uri}",
                f"restore it (mlflow experiments restore --experiment-id {found.experiment_id}) or pick another name",
            )
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_FOLDER).as_uri()
    return client.create_experiment(name, artifact_location=location)


def workspace_id(root: Path) -> str:
    """A short tag value naming the workspace folder (safe in an MLflow filter string, unlike a path)."""
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]


def _existing_runs(client, experiment_id: str, root: Path) -> dict[int, str]:
    """The runs this workspace exported before, by variant id (found by their tags)."""
    runs, token = {}, None
    query = f"tags.`{WORKSPACE_ID_TAG}` = '{workspace_id(root)}'"
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=query, page_token=token, order_by=["attribute.start_time ASC"]
        )
        for run in page:
            given = run.data.tags.get(VARIANT_TAG, "")
            if given.isdigit():
                runs.setdefault(int(given), run.info.run_id)
        token = page.token
        if not token:
            return runs


def _millis(iso: str | None) -> int | None:
    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


def _create_run(client, experiment_id: str, workspace: Workspace, variant: Variant) -> str:
    tags = {
        VARIANT_TAG: str(variant.id),
        WORKSPACE_TAG: str(workspace.root),
        WORKSPACE_ID_TAG: workspace_id(workspace.root),
    }
    run = client.create_run(experiment_id, start_time=_millis(variant.created_at), tags=tags, run_name=variant.name)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=_millis(variant.created_at))
    return run.info.run_id


def _fill_run(client, run_id: str, workspace: Workspace, variant: Variant, known: dict, machines: dict) -> None:
    """Params (new keys only: MLflow params never change), tags, and the metrics not logged before."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.get_run(run_id)
    params, omitted = step_params(variant)
    new_params = [Param(k, v) for k, v in params.items() if k not in run.data.params]
    measured = _measurements(workspace, variant.id)
    tags = lineage_tags(variant, workspace.lineage(variant.id), machines, measured)
    if variant.parent_id is not None and variant.parent_id in known:
        tags["mlflow.parentRunId"] = known[variant.parent_id]
    if omitted:
        tags["workbench.params_omitted"] = f"{', '.join(omitted)} (too long for a param: see params.json)"
        _log_json(client, run_id, "params.json", variant.params)
    metrics = [Metric(k, v, t, s) for k, v, t, s in variant_metrics(measured)]
    fresh = [m for m in metrics if not _logged(client, run_id, m.key, m.step)]
    _log_batches(client, run_id, fresh, new_params, [RunTag(k, v) for k, v in tags.items()])


def _log_batches(client, run_id: str, metrics: list, params: list, tags: list) -> None:
    """MLflow takes at most 100 params and tags and 1000 metrics per batch."""
    for start in range(0, max(len(params), len(tags), 1), 100):
        client.log_batch(run_id, params=params[start : start + 100], tags=tags[start : start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def _logged(client, run_id: str, key: str, step: int) -> bool:
    return any(point.step == step for point in client.get_metric_history(run_id, key))


def _log_json(client, run_id: str, name: str, data) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(json.dumps(data, indent=2, default=str))
        client.log_artifact(run_id, str(path))


def _log_artifacts(
    client, run_id: str, workspace: Workspace, variant: Variant, max_mb: float, result: MlflowExport
) -> None:
    """The variant's file or folder under model/ (once; skipped above `max_mb`) and its model card (refreshed)."""
    from ..report.documentation.model_card import model_card

    path = workspace.root / variant.path if variant.path else None
    size_mb = (variant.size_bytes or 0) / 1e6
    if path is None or not path.exists():
        note = f"skipped: no file at {path}" if path else "skipped: the variant has no artifact"
        result.skipped.append(Skipped(variant.id, "artifact", note))
    elif size_mb > max_mb:
        note = f"skipped: {size_mb:.1f} MB is above max_artifact_mb {max_mb:g}"
        result.skipped.append(Skipped(variant.id, "artifact", note))
    elif path.name in {Path(f.path).name for f in client.list_artifacts(run_id, "model")}:
        note = f"model/{path.name}"
    elif path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path=f"model/{path.name}")
        note = f"model/{path.name}"
    else:
        client.log_artifact(run_id, str(path), artifact_path="model")
        note = f"model/{path.name}"
    client.set_tag(run_id, "workbench.artifact", note)
    with tempfile.TemporaryDirectory() as folder:
        card = Path(folder) / "model_card.md"
        card.write_text(model_card(workspace, variant.id).markdown())
        client.log_artifact(run_id, str(card))


# -- what a run holds ------------------------------------------------------------------------------------------------


def step_params(variant: Variant) -> tuple[dict[str, str], list[str]]:
    """The step's parameters as MLflow params (`prune.ratio`), and the keys left out for being too long."""
    params, omitted = {}, []
    for key, value in _flatten(variant.params, variant.step).items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > PARAM_VALUE_LIMIT or len(key) > 250:
            omitted.append(key)
        else:
            params[key] = text
    return params, omitted


def _flatten(data: dict, prefix: str) -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def lineage_tags(variant: Variant, chain: list[Variant], machines: dict, measured: list[Measurement]) -> dict:
    """The variant's lineage and the environment it was measured in (else made in), as run tags."""
    tags = {
        "workbench.name": variant.name,
        "workbench.step": variant.step,
        "workbench.lineage": ">".join(str(v.id) for v in reversed(chain)),
        "workbench.parent_id": "" if variant.parent_id is None else str(variant.parent_id),
        "workbench.sha256": variant.sha256 or "",
        "workbench.format": variant.format.value if variant.format else "",
        "workbench.size_bytes": str(variant.size_bytes or ""),
    }
    fingerprint = next((m.fingerprint_id for m in reversed(measured) if m.fingerprint_id), variant.fingerprint_id)
    data = machines.get(fingerprint) or {}
    if data:
        tags["workbench.fingerprint_id"] = fingerprint
        tags["workbench.cpu"] = str((data.get("cpu") or {}).get("model", ""))
        tags["workbench.version.python"] = str(data.get("python", ""))
        for name in LIBRARIES:
            if name in (data.get("libraries") or {}):
                tags[f"workbench.version.{name}"] = str(data["libraries"][name])
    return tags


def _measurements(workspace: Workspace, variant_id: int) -> list[Measurement]:
    return [m for m in workspace.ledger.measurements(variant_id=variant_id) if m.ok]


def variant_metrics(measured: list[Measurement]) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step = the ledger's measurement id) of the newest measurement per kind and setting.

    Keys: `accuracy.<data>.<split>.<imgsz>.map50_95` (and plain `map50_95` ... for the newest accuracy),
    `latency.<runtime>.<precision>.<imgsz>.t<threads>[.b<batch>].p50_ms`, `parity.<runtime>.<precision>.<imgsz>.*`.
    """
    newest: dict[str, Measurement] = {}
    for m in measured:
        setting = _setting(m)
        if setting is not None:
            newest.pop(setting, None)  # re-inserted: the dict stays in measurement order
            newest[setting] = m
    rows = []
    for setting, m in newest.items():
        kind = setting.split(".", 1)[0]
        figures = {"accuracy": ACCURACY_FIGURES, "latency": LATENCY_FIGURES, "parity": PARITY_FIGURES}[kind]
        rows += [(f"{setting}.{k}", v, _millis(m.created_at), m.id) for k, v in _numbers(m.metrics, figures)]
        if kind == "parity" and m.metrics.get("verdict"):
            rows.append((f"{setting}.pass", float(m.metrics["verdict"] == "pass"), _millis(m.created_at), m.id))
    accuracy = [m for s, m in newest.items() if s.startswith("accuracy.")]
    if accuracy:
        latest = max(accuracy, key=lambda m: m.id)
        rows += [(k, v, _millis(latest.created_at), latest.id) for k, v in _numbers(latest.metrics, ACCURACY_FIGURES)]
    return rows


def _numbers(metrics: dict, figures: tuple[str, ...]) -> list[tuple[str, float]]:
    return [(k, float(metrics[k])) for k in figures if isinstance(metrics.get(k), int | float)]


def _setting(m: Measurement) -> str | None:
    """The metric-key prefix naming a measurement's kind and setting; None for kinds not exported."""
    c = m.context
    if m.kind == "accuracy":
        data = Path(c["data_yaml"]).parent.name if c.get("data_yaml") else "data"
        parts = ["accuracy", data, c.get("split") or "val", c.get("imgsz")]
    elif m.kind == "latency":
        batch = c.get("batch") or 1
        parts = ["latency", c.get("runtime"), c.get("precision"), c.get("imgsz"), f"t{c.get('threads')}"]
        parts += [f"b{batch}"] if batch != 1 else []
    elif m.kind == "parity":
        parts = ["parity", c.get("runtime"), c.get("precision"), c.get("imgsz")]
    else:
        return None
    return ".".join(re.sub(r"[^A-Za-z0-9_\-]", "_", str(p)) for p in parts)
