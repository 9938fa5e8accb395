"""The Dask sweep engine on a 2-worker LocalCluster (loopback only): trials, a killed worker, serialized timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from workbench.cli import main as cli_main
from workbench.core.environment import fingerprint, fingerprint_id
from workbench.core.errors import ConfigError
from workbench.core.services.recipe_sweeps import OPTIMIZER_TOOLKIT
from workbench.core.store.workspace import Workspace
from workbench.core.sweep import transfer
from workbench.core.sweep.trials import TrialSpec

TARGET = "jetson-orin-nano-super-8gb"
TIMING = {"imgsz": [64], "seconds": 0.3, "warmup_s": 0.05, "warmup_runs": 2, "min_runs": 5, "windows": 1}


def spec(number: int, ratio: float, target: str | None = None) -> TrialSpec:
    recipe = {"name": f"trial-{number}", "steps": [{"prune": {"ratio": ratio, "round_to": 16, "imgsz": 64}}]}
    accuracy = {"imgsz": [64], "accuracy_images": 4}
    return TrialSpec(
        number, {"prune.ratio": ratio}, recipe, accuracy, TIMING, target=target, sweep="dask-test",
        toolkit=OPTIMIZER_TOOLKIT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from workbench.core.data.generate import ShapesConfig, generate_shapes
    from workbench.core.models.sources import open_source, record_source

    workspace = Workspace(tmp_path_factory.mktemp("dask") / "ws")
    model_id = record_source(workspace, open_source("demo"))
    data = generate_shapes(workspace.datasets, ShapesConfig(seed=3, train=8, val=8, imgsz=64))
    return workspace, model_id, data.data_yaml


@pytest.fixture(scope="module")
def engine():
    from workbench.core.sweep.dask_engine import DaskEngine

    with DaskEngine(workers=2, timeout_s=300) as running:
        yield running


@pytest.fixture(scope="module")
def six(engine, study):
    """Six tiny trials (prune at six ratios), their results and progress events."""
    workspace, model_id, data_yaml = study
    events = []
    trials = [spec(n, ratio) for n, ratio in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6))]
    results = list(engine.run(workspace, model_id, data_yaml, trials, progress=events.append))
    return trials, results, events


# ------------------------------------------------------------------------------------------- no cluster needed


def test_the_ledger_stores_the_fingerprint_it_is_given(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    vid = workspace.ledger.add_variant("m.pt", step="source")
    other = {**fingerprint(), "cpu": {"model": "Some ARM board", "isa": ["asimd"]}}
    theirs = workspace.ledger.add_measurement(vid, "latency", {"p50_ms": 1.0}, fingerprint=other)
    ours = workspace.ledger.add_measurement(vid, "latency", {"p50_ms": 2.0})
    stored = {f["id"]: f["data"] for f in workspace.ledger.fingerprints()}
    assert stored[workspace.ledger.measurement(theirs).fingerprint_id] == other
    assert workspace.ledger.measurement(ours).fingerprint_id == fingerprint_id(fingerprint())


def test_a_dataset_travels_as_bytes_and_a_split_outside_its_folder_is_refused(tmp_path, tiny_dataset):
    packed = transfer.pack_dataset(tiny_dataset.data_yaml)
    copy = transfer.unpack_dataset(packed, tmp_path / "there")
    import yaml

    data = yaml.safe_load(copy.read_text())
    assert data["path"].startswith(str(tmp_path)) and not os.path.isabs(data["train"])
    assert sorted(p.name for p in (tmp_path / "there").rglob("*.png")) == sorted(
        p.name for p in tiny_dataset.root.rglob("*.png")
    )
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump({"path": str(tmp_path / "empty"), "train": "/elsewhere/images", "val": "x"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="outside its dataset folder"):
        transfer.pack_dataset(outside)


def test_the_worker_command_refuses_an_unknown_target_or_a_bad_address(capsys):
    assert cli_main(["worker", "--scheduler", "127.0.0.1:8786", "--target", "no-such-board"]) == 2
    assert "unknown target 'no-such-board'" in capsys.readouterr().err
    assert cli_main(["worker", "--scheduler", "not an address:port"]) == 2
    assert "not a scheduler address" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- on the cluster


def test_six_trials_land_in_the_ledger_with_lineage_and_worker_fingerprints(engine, study, six):
    workspace, model_id, _ = study
    trials, results, events = six
    assert sorted(r.number for r in results) == [t.number for t in trials]
    assert all(r.ok and r.final_id is not None for r in results), [r.error for r in results if not r.ok]
    assert all({"map50_95", "p50_ms", "p99_ms"} <= set(r.values) for r in results)
    assert [v.id for v in workspace.lineage(results[0].final_id)][-1] == model_id
    ratios = sorted(v.params["ratio"] for v in workspace.ledger.variants(step="prune"))
    assert ratios == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # one copy of each trial's variant
    workers = {r.worker for r in results}
    assert len(workers) == 2 and workers <= set(engine.client.scheduler_info()["workers"])
    worker_ids = {fingerprint_id(f) for f in engine.client.run(fingerprint).values()}
    for r in results:
        kinds = {m.kind: m for m in workspace.ledger.measurements(variant_id=r.final_id)}
        assert {"accuracy", "latency", "sweep_trial"} <= set(kinds)
        assert kinds["accuracy"].fingerprint_id in worker_ids and kinds["latency"].fingerprint_id in worker_ids
        assert kinds["accuracy"].context["data_yaml"] == str(study[2])  # the client's dataset, not the scratch copy
    assert events[-1].done == events[-1].total == 6 and events[-1].message == "done"


def test_no_two_latency_timings_on_one_machine_overlap(study, six):
    workspace, _, _ = study
    rows = [m.context for m in workspace.ledger.measurements(kind="latency")]
    assert len(rows) >= 4 and len({c["worker"] for c in rows}) == 2  # both workers timed
    for machine in {c["machine"] for c in rows}:
        windows = sorted((c["timed_from"], c["timed_to"]) for c in rows if c["machine"] == machine)
        for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
            assert start >= end, f"two timings overlapped on {machine}"


def test_a_worker_killed_mid_trial_loses_only_that_attempt(engine, study, six):
    workspace, model_id, data_yaml = study
    victim = spec(10, 0.45)
    results = []
    runner = threading.Thread(target=lambda: results.extend(engine.run(workspace, model_id, data_yaml, [victim])))
    runner.start()
    deadline = time.monotonic() + 120
    while engine.attempts(victim) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    running = [w for w, keys in engine.client.processing().items() if any(str(k).startswith("trial-10-") for k in keys)]
    assert running, "the trial never started"
    pid = engine.client.run(os.getpid, workers=running)[running[0]]
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=180)
    assert not runner.is_alive() and len(results) == 1
    (result,) = results
    assert result.ok and result.attempts >= 2
    assert [v.params["ratio"] for v in workspace.ledger.variants(step="prune")].count(0.45) == 1
    assert len(workspace.ledger.measurements(variant_id=result.final_id, kind="latency")) == 1


def test_a_target_trial_is_timed_by_the_worker_started_for_that_target(engine, study, six):
    workspace, model_id, data_yaml = study
    address = engine.client.scheduler.address
    before = set(engine.client.scheduler_info()["workers"])
    command = [sys.executable, "-m", "workbench", "worker", "--scheduler", address, "--target", TARGET]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while set(engine.client.scheduler_info()["workers"]) == before and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.2)
        (target_worker,) = set(engine.client.scheduler_info()["workers"]) - before
        (result,) = engine.run(workspace, model_id, data_yaml, [spec(20, 0.35, target=TARGET)])
        assert result.ok, result.error
        (latency,) = workspace.ledger.measurements(variant_id=result.final_id, kind="latency")
        assert latency.context["target"] == TARGET and latency.context["worker"] == target_worker
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)


def test_cancel_drops_the_running_trials_and_imports_nothing_of_them(engine, study, six):
    workspace, model_id, data_yaml = study
    trials = [spec(30, 0.15), spec(31, 0.25)]
    before = len(workspace.ledger.variants())
    results, events = [], []
    run = engine.run(workspace, model_id, data_yaml, trials, progress=events.append)
    runner = threading.Thread(target=lambda: results.extend(run))
    runner.start()
    deadline = time.monotonic() + 120
    while engine.attempts(trials[0]) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.cancel()
    runner.join(timeout=60)
    assert not runner.is_alive() and results == []
    assert len(workspace.ledger.variants()) == before and events[-1].message == "cancelled"


def test_the_dask_dashboard_is_served_on_this_machine_only_and_answers(engine):
    import urllib.parse
    import urllib.request

    link = engine.dashboard_link  # bokeh comes with the sweep extra
    assert link is not None and urllib.parse.urlsplit(link).hostname == "127.0.0.1"
    with urllib.request.urlopen(link, timeout=30) as response:
        assert response.status == 200 and b"Dask" in response.read()
