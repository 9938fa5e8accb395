"""The `workbench` command: info, data, and clear errors with exit code 2 that change nothing on disk."""

import subprocess
import sys

from workbench.cli import main


def test_python_dash_m_info_prints_the_fingerprint():
    out = subprocess.run([sys.executable, "-m", "workbench", "info"], capture_output=True, text=True, check=True)
    assert "CPU" in out.stdout and "ultralytics" in out.stdout and "fingerprint" in out.stdout


def test_data_command_writes_a_dataset_and_shifts(tmp_path, capsys):
    assert (
        main(
            [
                "data",
                "--out",
                str(tmp_path),
                "--train-images",
                "2",
                "--val-images",
                "2",
                "--imgsz",
                "64",
                "--shift",
                "dark",
                "--shift",
                "lowres",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "data YAML" in out and out.count("shifted:") == 2
    assert (tmp_path / "shapes-s0-2x2-64px" / "shifts" / "lowres" / "data.yaml").is_file()


def test_missing_model_is_a_clear_error_and_creates_no_workspace(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing.pt"), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert "error: model file" in err and "fix:" in err and "Traceback" not in err
    assert not (tmp_path / "ws").exists()


def test_corrupt_model_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["demo", "--model", str(bad), "--workspace", str(tmp_path / "ws")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_unwritable_workspace_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--workspace", str(blocker / "ws")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_evaluate_with_a_yaml_pointing_at_nothing(tmp_path, capsys):
    data = tmp_path / "data.yaml"
    data.write_text("path: /nowhere\ntrain: images\nval: images\nnames: [a, b, c, d]\n")
    assert main(["evaluate", "--data", str(data)]) == 2
    assert "points at nothing" in capsys.readouterr().err


def test_optimize_refuses_a_bad_recipe_before_any_work(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("steps:\n  - prune: {ratio: 1.5}\n")
    assert main(["optimize", "--recipe", str(recipe), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert "step 1 (prune): pruning ratio must be between 0 and 1" in err and "fix:" in err
    assert not (tmp_path / "ws").exists()
    assert main(["optimize", "--recipe", "no-such-recipe", "--workspace", str(tmp_path / "ws")]) == 2
    assert "demo-best" in capsys.readouterr().err


def test_optimize_runs_a_recipe_and_prints_its_table(tmp_path, capsys):
    from workbench.core.data.generate import ShapesConfig, generate_shapes

    data = generate_shapes(tmp_path / "data", ShapesConfig(seed=3, train=8, val=8, imgsz=64))  # validation caches
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "steps:\n  - sparsify: {ratio: 0.5, imgsz: 64}\n  - export: {format: onnx, imgsz: 64}\n"
        "measure: {imgsz: [64], seconds: 0.3, warmup_s: 0.1, min_runs: 3}\n"
    )
    assert (
        main(["optimize", "--recipe", str(recipe), "--data", str(data.data_yaml), "--workspace", str(tmp_path / "ws")])
        == 0
    )
    out = capsys.readouterr().out
    assert "| input |" in out and "| 1:sparsify |" in out and "| 2:export |" in out and "onnxruntime" in out


def _doctor_workspace(tmp_path):
    """A workspace with one exported variant (a dummy file: the doctor is faked) and a folder of one image."""
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    variant_id = workspace.add_artifact(lambda p: p.write_bytes(b"onnx"), "model.onnx", step="export", format="onnx")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    return workspace, variant_id


def _fake_accuracy_doctor(monkeypatch, verdict):
    """Stand in for the accuracy doctor: record what it was asked, find `verdict` in the preprocessing."""
    from workbench.core.doctor import accuracy as accuracy_doctor
    from workbench.core.doctor.findings import Diagnosis, Finding

    calls = []

    def doctor(model, data=None, images_dir=None, **options):
        calls.append((model, images_dir, options))
        found = Finding("preprocessing", verdict, "BGR images are fed as RGB", "feed RGB", cause="channels_swapped")
        return Diagnosis.of("accuracy", [found], str(model))

    monkeypatch.setattr(accuracy_doctor, "run_accuracy_doctor", doctor)
    return calls


def test_doctor_variant_records_the_diagnosis_and_exits_1_when_it_found_something(tmp_path, capsys, monkeypatch):
    import json

    from workbench.core.doctor.findings import Verdict

    workspace, variant_id = _doctor_workspace(tmp_path)
    calls = _fake_accuracy_doctor(monkeypatch, Verdict.CAUSE)
    argv = ["doctor", "accuracy", "--workspace", str(workspace.root), "--variant", str(variant_id)]
    assert main([*argv, "--images", str(tmp_path / "images"), "--color", "bgr", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    model, images_dir, options = calls[-1]
    assert model == workspace.artifact_path(variant_id) and images_dir == tmp_path / "images"
    assert options["color"] == "bgr" and options["workspace"].root == workspace.root
    stored = workspace.ledger.measurement(report["measurement_id"])
    assert (stored.kind, stored.variant_id, report["variant_id"]) == ("diagnosis", variant_id, variant_id)
    assert stored.metrics["cause"] == "channels_swapped" and not report["ok"]


def test_doctor_variant_exits_0_when_nothing_was_found_and_prints_the_measurement(tmp_path, capsys, monkeypatch):
    from workbench.core.doctor.findings import Verdict

    workspace, variant_id = _doctor_workspace(tmp_path)
    _fake_accuracy_doctor(monkeypatch, Verdict.OK)
    argv = ["doctor", "accuracy", "--workspace", str(workspace.root), "--variant", str(variant_id)]
    assert main([*argv, "--images", str(tmp_path / "images")]) == 0
    (stored,) = workspace.ledger.measurements(kind="diagnosis")
    assert f"recorded as measurement {stored.id} of variant {variant_id}" in capsys.readouterr().out


def test_doctor_variant_with_model_is_an_error_that_says_pick_one(tmp_path, capsys, monkeypatch):
    from workbench.core.doctor.findings import Verdict

    workspace, variant_id = _doctor_workspace(tmp_path)
    calls = _fake_accuracy_doctor(monkeypatch, Verdict.CAUSE)
    argv = ["doctor", "accuracy", "--workspace", str(workspace.root), "--variant", str(variant_id), "--model", "demo"]
    assert main([*argv, "--images", str(tmp_path / "images")]) == 2
    err = capsys.readouterr().err
    assert "--model and --variant" in err and "fix: pick one" in err
    assert not calls and not workspace.ledger.measurements()
    assert main(["doctor", "speed", "--workspace", str(tmp_path / "none"), "--variant", "1"]) == 2
    assert "no workspace ledger" in capsys.readouterr().err and not (tmp_path / "none").exists()
