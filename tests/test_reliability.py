"""Reliability: a checkpoint with a pickle payload never runs, bad input changes nothing on disk, interrupted runs
leave nothing behind. Each test fails when its protection is removed (the payload test proves its payload is real).

Faults of the disk and the ledger are in test_faults.py; property-based tests of the loaders in test_properties.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from workbench.cli import main
from workbench.core.errors import ConfigError, ModelLoadError
from workbench.core.models import pickle_guard
from workbench.core.models.cards import demo_weights
from workbench.core.models.pickle_guard import UnsafeCheckpointError
from workbench.core.models.sources import load_model, open_source
from workbench.core.optimize.recipes import Recipe
from workbench.core.store.workspace import StaleStagingWarning, Workspace

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls os.system: the classic .pt attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """The demo checkpoint with a payload that would create `marker` when unpickled."""
    import torch

    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "PAYLOAD-RAN"
    with pickle_guard.ultralytics_safe_mode(False):
        checkpoint = torch.load(demo_weights(), weights_only=False)  # the shipped file: trusted
    checkpoint["extra"] = _Payload(marker)
    path = folder / "evil.pt"
    torch.save(checkpoint, path)
    return path, marker


@pytest.fixture
def no_payload(evil):
    path, marker = evil
    marker.unlink(missing_ok=True)
    yield path
    assert not marker.exists(), "the payload ran"


def test_the_api_refuses_a_payload_before_it_runs(no_payload):
    with pytest.raises(UnsafeCheckpointError, match=r"posix.system.*nothing from it has run") as error:
        load_model(no_payload)
    assert "trust=True" in error.value.fix and "--trust-checkpoint" in error.value.fix
    with pytest.raises(UnsafeCheckpointError):
        open_source(str(no_payload))


def test_ultralytics_restricted_loading_stops_it_even_when_the_first_check_is_bypassed(no_payload, monkeypatch):
    monkeypatch.setattr(pickle_guard, "refused_globals", lambda path: [])
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(no_payload)


def test_a_trusted_file_loads_in_full_and_its_payload_runs(evil, monkeypatch):
    monkeypatch.setattr(pickle_guard, "_trusted", set())  # trust lasts for the process: keep it to this test
    path, marker = evil
    marker.unlink(missing_ok=True)
    with pytest.warns(pickle_guard.TrustedLoadWarning, match="any code it carries runs"):
        model = load_model(path, trust=True)
    assert marker.exists() and model.task == "detect"  # the payload is real: the refusal above is what stops it
    marker.unlink()


def test_the_workbench_own_checkpoints_still_load():
    assert type(load_model("student").model.model[2]).__name__ == "C2fSplitFree"  # allow-listed workbench class
    assert load_model("demo").task == "detect"


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--data", "{data}"],
        ["demo", "--workspace", "{ws}"],
        ["optimize", "--recipe", "demo-short", "--workspace", "{ws}"],
        ["bench", "--out", "{ws}"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_refuses_a_payload_and_writes_nothing(command, no_payload, tiny_dataset, tmp_path, capsys):
    ws = tmp_path / "ws"
    argv = [a.format(data=tiny_dataset.data_yaml, ws=ws) for a in command] + ["--model", str(no_payload)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "was not loaded" in err and "--trust-checkpoint" in err and "Traceback" not in err
    assert not ws.exists()


def test_a_recipe_teacher_with_a_payload_is_refused_before_the_workspace(no_payload, tiny_dataset, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"steps": [{"distill": {"epochs": 1, "teacher": str(no_payload)}}]}))
    argv = [
        "optimize",
        "--recipe",
        str(recipe),
        "--data",
        str(tiny_dataset.data_yaml),
        "--workspace",
        str(tmp_path / "ws"),
    ]
    assert main(argv) == 2
    assert "was not loaded" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_the_model_panel_refuses_a_payload(no_payload, tmp_path):
    from workbench.core.services.session import Session
    from workbench.widgets.panels import ModelPanel

    session = Session(Workspace(tmp_path / "ws"))
    panel = ModelPanel(session, background=False)
    panel.model.value = str(no_payload)
    panel.run_button.click()
    assert panel.state == "error" and "was not loaded" in panel.message.value
    assert "Traceback" not in panel.message.value and not session.workspace.ledger.variants()


# -- validate, then write ------------------------------------------------------------------------------------------


def _dataset_copy(tiny_dataset, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset.root, root)
    data = yaml.safe_load(tiny_dataset.data_yaml.read_text())
    data["path"] = str(root)
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def _bad_class_id(data_yaml: Path) -> None:
    label = next((data_yaml.parent / "labels" / "val").glob("*.txt"))
    label.write_text("99 0.5 0.5 0.1 0.1\n")


def _wrong_class_count(data_yaml: Path) -> None:
    data = yaml.safe_load(data_yaml.read_text())
    data["names"] = {0: "a", 1: "b"}
    data_yaml.write_text(yaml.safe_dump(data))


def _points_at_nothing(data_yaml: Path) -> None:
    data = yaml.safe_load(data_yaml.read_text())
    data["val"] = "images/nowhere"
    data_yaml.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    "spoil,expected",
    [(_bad_class_id, "class"), (_wrong_class_count, "class"), (_points_at_nothing, "nowhere")],
    ids=["class-id-out-of-range", "wrong-class-count", "split-points-at-nothing"],
)
def test_optimize_with_bad_data_writes_nothing(spoil, expected, tiny_dataset, tmp_path, capsys):
    data_yaml = _dataset_copy(tiny_dataset, tmp_path)
    spoil(data_yaml)
    ws = tmp_path / "ws"
    assert main(["optimize", "--recipe", "demo-short", "--data", str(data_yaml), "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "fix:" in err and "Traceback" not in err
    assert not ws.exists()


@pytest.mark.parametrize("command", ["optimize", "bench", "demo"])
def test_a_missing_model_writes_nothing(command, tmp_path, capsys):
    where = ["--out", str(tmp_path / "ws")] if command == "bench" else ["--workspace", str(tmp_path / "ws")]
    recipe = ["--recipe", "demo-short"] if command == "optimize" else []
    assert main([command, *recipe, *where, "--model", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_step_that_cannot_run_on_the_generated_data_is_refused_before_generating(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"steps": [{"quantize": {"calibration_images": 300}}]}))
    argv = ["optimize", "--recipe", str(recipe), "--train-images", "4", "--workspace", str(tmp_path / "ws")]
    start = time.monotonic()
    assert main(argv) == 2
    assert "fewer than the 8 calibration needs" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists() and time.monotonic() - start < 30


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--threads", "0"],
        ["bench", "--imgsz", "-5"],
        ["bench", "--imgsz", "100"],
        ["bench", "--seconds", "0"],
        ["optimize", "--recipe", "demo-short", "--train-images", "0"],
        ["demo", "--val-images", "-1"],
        ["evaluate", "--data", "x.yaml", "--batch", "0"],
    ],
    ids=" ".join,
)
def test_bad_numbers_are_refused_before_any_work(argv, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")] if argv[0] == "bench" else []
    start = time.monotonic()
    try:
        code = main([*argv, *out])
    except SystemExit as exit:  # argparse refuses the value itself
        code = exit.code
    assert code == 2 and time.monotonic() - start < 10
    assert "Traceback" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "recipe,problem",
    [
        ({"steps": [{"prune": 0.3}]}, r"step 1 \(prune\): the options must be a mapping of name: value, got 0.3"),
        ({"steps": [{"prune": {"ratio": "abc"}}]}, r"step 1 \(prune\): option ratio must be a number, got 'abc'"),
        ({"steps": ["prune"], "measure": {"imgsz": "abc"}}, r"measure: option imgsz must be a list"),
        ({"steps": ["prune"], "measure": {"imgsz": [-5]}}, r"measure: imgsz must be a multiple of 32"),
        ({"steps": [{"prune": {"stage_ratios": {"9": "x"}}}]}, r"step 1 \(prune\): ValueError"),
        ({"steps": [{"export": {"format": "mnn"}}]}, r"option format must be one of 'onnx'"),
        ({"steps": [{"quantize": {"imgsz": True}}]}, r"option imgsz must be a whole number or null, got True"),
        ({"steps": [{"distill": {"teacher": 5}}]}, r"teacher must be text, got 5"),
        ({"steps": [{"finetune": {"epochs": 0}}]}, r"epochs must be >= 1, got 0"),
    ],
)
def test_recipe_errors_name_the_step_the_option_the_value_and_what_is_expected(recipe, problem):
    with pytest.raises(ConfigError, match=problem) as error:
        Recipe.from_dict(recipe, source="r.yaml")
    assert error.value.problem.startswith("r.yaml") and error.value.fix
    assert "unknown option" not in error.value.problem


# -- clean interruption -------------------------------------------------------------------------------------------


def _start_export(tmp_path, tiny_dataset) -> tuple[subprocess.Popen, Path]:
    recipe = tmp_path / "export.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "steps": [{"export": {"format": "onnx", "imgsz": 64}}],
                "measure": {"latency": False, "accuracy_images": 2},
            }
        )
    )
    ws = tmp_path / "ws"
    argv = ["--recipe", str(recipe), "--data", str(tiny_dataset.data_yaml), "--workspace", str(ws)]
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench", "optimize", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, ws


def _leftovers(ws: Path) -> list[Path]:
    staging = [p for p in (ws / "artifacts").glob(".*")] if (ws / "artifacts").is_dir() else []
    scratch = list((ws / ".staging").iterdir()) if (ws / ".staging").is_dir() else []
    return staging + scratch


def _wait_for_scratch(process: subprocess.Popen, ws: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.name.startswith("export-") for p in _leftovers(ws)):
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the export never started its scratch folder: {process.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_terminated_run_cleans_up_like_an_interrupted_one(sig, tmp_path, tiny_dataset):
    process, ws = _start_export(tmp_path, tiny_dataset)
    _wait_for_scratch(process, ws)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _leftovers(ws) == []
    assert [v.step for v in Workspace(ws).ledger.variants()] == ["source"]  # no row for the unfinished export


@pytest.mark.slow
def test_what_a_killed_run_left_is_swept_at_the_next_start(tmp_path, tiny_dataset):
    process, ws = _start_export(tmp_path, tiny_dataset)
    _wait_for_scratch(process, ws)
    process.kill()
    process.communicate(timeout=60)
    left = _leftovers(ws)
    assert left, "kill -9 left nothing to sweep"
    with pytest.warns(StaleStagingWarning, match=f"removed {len(left)} staging"):
        Workspace(ws)
    assert _leftovers(ws) == []


def test_the_sweep_never_touches_a_running_process_staging(tmp_path):
    ws = Workspace(tmp_path / "ws")
    mine = ws.artifacts / f".staging-{os.getpid()}-abcd1234-model.pt"
    mine.write_bytes(b"in progress")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleStagingWarning)
        Workspace(ws.root)
    assert mine.exists()
