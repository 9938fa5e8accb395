"""Drift watched on a served variant: the reference built from the variant's val images through the served model
and cached in the workspace, a darkened window recorded against the variant in the ledger (through the server),
an unshifted one not, the loader the admin endpoint switches variants with, and `workbench serve`'s drift and
sampling flags: refused before anything is written, wired into the metrics when right.

All on the demo model exported to OpenVINO at 128 px and 48 generated val images at 128 px."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serving_helpers import export_demo  # noqa: E402

from workbench.cli import main  # noqa: E402
from workbench.core.errors import ConfigError, DatasetError  # noqa: E402
from workbench.core.serve.monitoring import reference as references  # noqa: E402
from workbench.core.serve.monitoring.drift import DriftMonitor, ReferenceStats  # noqa: E402
from workbench.core.serve.monitoring.metrics import Metrics  # noqa: E402
from workbench.core.serve.service import loader  # noqa: E402
from workbench.core.serve.service.admin import LoadedVariant, VariantNotFound  # noqa: E402

IMGSZ = 128
WINDOW = 24  # the odd val images (24 of 48) make one window; the even ones the reference


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo model exported to OpenVINO at 128 px: (workspace, variant id)."""
    workspace, variants = export_demo(tmp_path_factory.mktemp("drift"), imgsz=IMGSZ)
    return workspace, variants["openvino"]


@pytest.fixture(scope="module")
def served(exported):
    from workbench.core.serve.service.model import ServedModel

    workspace, variant = exported
    return ServedModel.from_variant(workspace, variant, threads=1, workers=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """48 val images at 128 px, and the same scenes darkened (the generator's `dark` shift): their data YAMLs."""
    from workbench.core.data.generate import ShapesConfig, generate_shapes, generate_shift

    dataset = generate_shapes(tmp_path_factory.mktemp("val"), ShapesConfig(seed=3, train=1, val=48, imgsz=IMGSZ))
    return {"val": dataset.data_yaml, "dark": generate_shift(dataset, "dark")}


def _val(data_yaml: Path) -> list[Path]:
    from workbench.core.data.checks import list_images

    return list_images(data_yaml, "val")


class Counting:
    """The served model, counting its detections (a recomputed reference would show)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def detect(self, image):
        self.calls += 1
        return self.model.detect(image)

    def __getattr__(self, name):
        return getattr(self.model, name)


def _cached(workspace, variant_id) -> list[Path]:
    return sorted((workspace.root / "serve" / "drift").glob(f"variant-{variant_id}-*.json"))


def test_the_reference_comes_from_the_val_images_through_the_served_model_and_is_cached(exported, served, data):
    workspace, variant_id = exported
    model = Counting(served)
    first = references.drift_reference(workspace, variant_id, model, data=data["val"], images=WINDOW)
    assert model.calls == WINDOW and len(first.features) == WINDOW and first.source.endswith("val (24 images)")
    assert sum(first.counts) == len(first.scores) > 0, "the demo model finds shapes on its own val images"
    (cache,) = _cached(workspace, variant_id)
    assert cache == references.reference_cache(workspace, variant_id, served, data["val"], WINDOW)
    again = references.drift_reference(workspace, variant_id, model, data=data["val"], images=WINDOW)
    assert model.calls == WINDOW and again == first == ReferenceStats.load(cache)  # read back, not recomputed
    assert not list(cache.parent.glob(".*.tmp"))
    cache.write_text("{not json")  # a damaged cache is built again
    assert references.drift_reference(workspace, variant_id, model, data=data["val"], images=WINDOW) == first
    assert model.calls == 2 * WINDOW and ReferenceStats.load(cache) == first


def test_without_data_the_reference_asks_for_drift_data_until_the_ledger_knows_it(exported, served, data, tmp_path):
    from workbench.core.store.workspace import Workspace

    workspace, variant_id = exported
    other = Workspace(tmp_path / "ws")  # the same export in a workspace of its own: no data recorded, no cache
    copy = other.add_artifact(workspace.artifact_path(variant_id), "demo_openvino_model", step="export")
    with pytest.raises(ConfigError, match=f"no validation data is known for variant {copy}") as refused:
        references.drift_reference(other, copy, served)
    assert "--drift-data DATA_YAML" in refused.value.fix
    with pytest.raises(ConfigError, match="does not exist"):
        references.drift_reference(other, copy, served, data="/nowhere/data.yaml")
    with pytest.raises(ConfigError, match="at least 8 images"):
        references.drift_monitor(other, copy, served, data=data["val"], window=4)
    assert not (other.root / "serve").exists()
    other.ledger.add_measurement(copy, "accuracy", {"map50": 0.5}, {"data_yaml": str(data["val"]), "status": "ok"})
    assert references.drift_data(other, copy) == data["val"].resolve()
    model = Counting(served)
    reference = references.drift_reference(other, copy, model, images=WINDOW)
    assert reference.source.startswith(str(data["val"].resolve())) and model.calls == WINDOW
    assert len(_cached(other, copy)) == 1


def _send(url: str, paths: list[Path]) -> list[dict]:
    import httpx

    with httpx.Client(base_url=url) as http:
        answers = [
            http.post("/v1/detect", content=p.read_bytes(), headers={"Content-Type": "image/jpeg"}) for p in paths
        ]
    assert {a.status_code for a in answers} == {200}
    return [a.json() for a in answers]


def test_a_darkened_window_through_the_server_is_an_alert_of_the_variant_and_the_same_scenes_unshifted_none(
    exported, served, data
):
    from workbench.core.serve.service.local_server import serve_model

    workspace, variant_id = exported
    monitor = references.drift_monitor(workspace, variant_id, served, data=data["val"], window=WINDOW, images=WINDOW)
    assert monitor.probe is not None and monitor.reference.source.endswith("val (24 images)")
    reports = []
    metrics = Metrics(served.name, drift=monitor, workspace=workspace, variant_id=variant_id, on_drift=reports.append)
    with serve_model(served, metrics=metrics) as server:
        _send(server.url, _val(data["dark"])[1::2])  # the scenes the reference did not see, darkened
        metrics.flush()
    metrics.close()
    (alert,) = workspace.ledger.measurements(variant_id=variant_id, kind="drift_alert")
    assert len(reports) == 1 and alert.metrics["looks_like"] == "dark" and "brightness" in alert.metrics["drifted"]
    assert "dark" in alert.metrics["sentence"] and alert.context["window_images"] == WINDOW
    assert alert.context["reference"] == monitor.reference.source
    assert metrics.snapshot()["drift"]["looks_like"] == "dark"

    calm = references.drift_monitor(workspace, variant_id, served, data=data["val"], window=WINDOW, images=WINDOW)
    unshifted = Metrics(served.name, drift=calm, workspace=workspace, variant_id=variant_id, background=False)
    for path in _val(data["val"])[1::2]:
        import cv2

        image = cv2.imread(str(path))
        unshifted.observe("detect", 200, {"total": 5.0}, 1, image=image, detections=served.detect(image))
    assert calm.latest is not None and calm.latest.images == WINDOW
    assert calm.latest.drifted == [], calm.latest.as_dict()
    assert {"brightness", "detections_per_image", "channel_order"} <= set(calm.latest.features)
    assert len(workspace.ledger.measurements(variant_id=variant_id, kind="drift_alert")) == 1


def test_the_loader_opens_a_variant_by_id_or_name_with_its_drift_monitor(exported, data):
    workspace, variant_id = exported
    load = loader.workspace_loader(workspace, drift=True, data=data["val"], window=WINDOW, threads=1, workers=1)
    loaded = load(str(variant_id), "served-name")
    assert isinstance(loaded, LoadedVariant) and loaded.variant_id == variant_id and loaded.model.name == "served-name"
    assert isinstance(loaded.drift, DriftMonitor) and loaded.drift.window == WINDOW
    assert loaded.drift.reference.source.startswith(str(data["val"].resolve()))
    name = workspace.variant(variant_id).name
    assert loader.resolve_variant(workspace, name) == variant_id
    plain = loader.workspace_loader(workspace, drift=False, threads=1, workers=1)(name, "other")
    assert plain.drift is None and plain.model.version == str(variant_id)


def test_the_loader_names_what_it_cannot_serve(exported, data, tmp_path):
    workspace, variant_id = exported
    load = loader.workspace_loader(workspace, drift=False)
    planned = workspace.ledger.add_variant("planned.onnx", step="export", parent_id=variant_id)
    cases = {
        "999": "no variant '999'",
        "nothing-of-that-name": "no variant 'nothing-of-that-name'",
        str(planned): f"variant {planned} \\(planned.onnx\\) has no artifact",
    }
    for given, named in cases.items():
        with pytest.raises(ConfigError, match=named) as refused:
            load(given, "served")
        assert refused.value.fix and isinstance(refused.value, VariantNotFound) == given.startswith(("999", "no"))
    twice = [workspace.ledger.add_variant("twin.onnx", step="export") for _ in range(2)]
    with pytest.raises(ConfigError, match="several variants") as refused:
        load("twin.onnx", "served")
    assert all(str(i) in refused.value.problem for i in twice)
    with pytest.raises(ConfigError, match="--drift-data"):
        loader.workspace_loader(workspace, drift=True)(str(variant_id), "served")  # no data recorded
    with pytest.raises(ConfigError, match="does not exist"):
        loader.workspace_loader(workspace, drift=True, data="/nowhere/data.yaml")
    (tmp_path / "data.yaml").write_text("names: {0: a}\n")
    with pytest.raises(DatasetError, match="val"):
        loader.workspace_loader(workspace, drift=True, data=tmp_path / "data.yaml")


# -- `workbench serve`: the flags ------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    """A workspace with one variant whose artifact is a stand-in file (never opened: the flags are refused first)."""
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    variant_id = workspace.add_artifact(lambda p: p.write_bytes(b"onnx"), "model.onnx", step="export")
    return workspace, variant_id


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--drift-window", "4"], "--drift-window must be at least 8 images, got 4"),
        (["--drift-data", "/nowhere/data.yaml"], "the drift data YAML /nowhere/data.yaml does not exist"),
        (["--drift"], "--drift needs validation data, and none is known for variant 1"),
        (["--drift-window", "50"], "--drift needs validation data"),  # a window asks for drift too
        (["--no-drift", "--drift-window", "50"], "--drift-window and --drift-data go with drift on"),
        (["--sample-max", "5"], "--sample-rate and --sample-max go with --sample-dir"),
        (["--sample-dir", "FILE"], "is a file"),
        (["--drift-data", "EMPTY"], "val"),
    ],
)
def test_serve_refuses_bad_drift_and_sampling_flags_before_writing_anything(small, tmp_path, capsys, flags, named):
    workspace, variant_id = small
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "EMPTY").write_text("names: {0: a}\n")  # a data YAML without a val split
    flags = [str(tmp_path / f) if f in ("FILE", "EMPTY") else f for f in flags]
    before = _files(tmp_path)
    assert main(["serve", str(variant_id), "--workspace", str(workspace.root), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "fix:" in err and "Traceback" not in err
    assert _files(tmp_path) == before, "nothing written: no key store, certificate, reference or sample folder"


def test_serve_refuses_drift_for_a_bare_artifact_without_data_and_bad_numbers(small, tmp_path, capsys):
    workspace, variant_id = small
    artifact = str(workspace.artifact_path(variant_id))
    before = _files(tmp_path)
    assert main(["serve", artifact, "--workspace", str(workspace.root), "--drift"]) == 2
    err = capsys.readouterr().err
    assert "none is known for a model served without a workspace variant" in err and "--drift-data DATA_YAML" in err
    assert main(["serve", "--bundle", str(tmp_path / "nowhere"), "--drift"]) == 2
    assert "--drift needs validation data" in capsys.readouterr().err
    for flag, value, named in [
        ("--drift-window", "0", "must be at least 1"),
        ("--sample-rate", "2", "at most 1"),
        ("--sample-max", "-1", "must be at least 1"),
    ]:
        with pytest.raises(SystemExit):
            main(["serve", artifact, "--workspace", str(workspace.root), "--sample-dir", "s", flag, value])
        assert named in capsys.readouterr().err
    assert _files(tmp_path) == before


def test_serve_wires_drift_sampling_and_the_loader_into_the_server(exported, data, tmp_path, monkeypatch, capsys):
    from workbench.core.serve.security.keys import KeyStore
    from workbench.core.serve.security.principal import Role
    from workbench.core.serve.service import server

    workspace, variant_id = exported
    keys = tmp_path / "keys.json"
    KeyStore(keys).add("ops", Role.OPERATOR)
    started = {}

    def fake_run_server(config, model, guard, audit, *, metrics=None, loader=None):
        started.update(config=config, model=model, metrics=metrics, loader=loader)

    monkeypatch.setattr(server, "run_server", fake_run_server)
    common = ["serve", str(variant_id), "--workspace", str(workspace.root), "--keys", str(keys), "--threads", "1"]
    flags = ["--drift-data", str(data["val"]), "--drift-window", "16", "--sample-dir", str(tmp_path / "samples")]
    assert main([*common, *flags, "--sample-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    metrics = started["metrics"]
    assert isinstance(metrics.drift, DriftMonitor) and metrics.drift.window == 16
    assert metrics.workspace.root == workspace.root and metrics.variant_id == variant_id
    assert metrics.sampler.rate == 0.5 and metrics.sampler.max_files == 1000 and (tmp_path / "samples").is_dir()
    assert f"drift: windows of 16 images against {data['val'].resolve()} val (48 images)" in out
    assert f"alerts in the ledger of variant {variant_id}" in out and "sampling 50.00% of the images" in out
    assert callable(started["loader"]) and _cached(workspace, variant_id)
    assert main([*common, "--no-drift"]) == 0
    assert started["metrics"].drift is None and started["metrics"].sampler is None
    assert "drift: off (--no-drift)" in capsys.readouterr().out


def test_the_flags_parse_as_documented():
    from workbench.cli import parser

    args = parser().parse_args(["serve", "3"])
    assert (args.drift, args.drift_window, args.drift_data, args.sample_dir) == (None, None, None, None)
    assert parser().parse_args(["serve", "3", "--no-drift"]).drift is False
    assert isinstance(parser().parse_args(["serve", "3", "--drift"]), argparse.Namespace)
