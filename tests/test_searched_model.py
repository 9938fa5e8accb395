"""The searched variant: shipping a sweep's best feasible trial with its card, recording it in a study with its
true lineage, and the bench row that judges it against Ultralytics' INT8 export."""

import json

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.services.recipe_sweeps import SearchSpace

FAST = {"seconds": 0.2, "warmup_s": 0.05, "min_runs": 3}
SPEC = {
    "name": "tiny-search",
    "steps": [
        {"prune": {"round_to": 16, "imgsz": 64}},
        {"finetune": {"epochs": 1, "batch": 4, "imgsz": 64, "nbs": 4}},
        {"export": {"format": "onnx"}},
    ],
    "search": {"prune.ratio": [0.2, 0.4], "measure.imgsz": [64]},
    "objective": {"minimize": "p50_ms"},
    "constraints": {"size_mb": {"max": 50.0}},
    "method": "grid",
    "trials": 2,
    "measure": FAST,
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A finished two-trial search from the demo model (standing in for the student) and its spec file."""
    import yaml

    from workbench.core.data.generate import ShapesConfig, generate_shapes
    from workbench.core.models.sources import open_source, record_source
    from workbench.core.store.workspace import Workspace
    from workbench.core.sweep.search import run_sweep
    from workbench.core.sweep.trials import LocalEngine

    root = tmp_path_factory.mktemp("searched")
    data = ShapesConfig(seed=3, train=8, val=8, imgsz=64)
    workspace = Workspace(root / "ws")
    data_yaml = generate_shapes(workspace.datasets, data).data_yaml
    model_id = record_source(workspace, open_source("demo"))
    spec = root / "tiny-search.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    result = run_sweep(workspace, model_id, data_yaml, SearchSpace.from_yaml(spec), engine=LocalEngine())
    assert not result.failed and result.best is not None, result.failed
    return workspace, model_id, spec, data, result


def test_the_best_feasible_trial_ships_with_its_search_on_the_card(swept, tmp_path):
    from workbench.core.models.cards import SEARCHED_NAME
    from workbench.core.services.searched_model import ship_searched

    workspace, model_id, spec, data, result = swept
    card = ship_searched(workspace.root, spec, tmp_path, data=data, imgsz=64)
    weights = tmp_path / SEARCHED_NAME
    assert weights.is_file() and json.loads(weights.with_suffix(".json").read_text()) == card
    best = result.best
    assert card["search"]["chosen_trial"] == best["number"] and card["search"]["name"] == "tiny-search"
    assert [t["number"] for t in card["search"]["trials"]] == [0, 1]
    assert card["search"]["seconds_total"] == pytest.approx(sum(r["seconds"] for r in result.rows), abs=0.2)
    assert "prune.ratio" in card["search"]["spec"]  # the spec as written
    prune = next(s["prune"] for s in card["recipe"]["steps"] if "prune" in s)
    assert prune["ratio"] == best["params"]["prune.ratio"]
    assert not any("export" in s for s in card["recipe"]["steps"])  # the weights are the trained PyTorch model
    trained = next(v for v in workspace.lineage(best["variant_id"]) if v.step == "finetune")
    assert card["sha256"] == trained.sha256 and card["parent_sha256"] == workspace.variant(model_id).sha256
    assert 0 <= card["metrics"]["map50_95"] <= 1 and card["metrics"]["imgsz"] == 64


def test_nothing_ships_when_no_trial_meets_the_constraints(swept, tmp_path):
    import yaml

    from workbench.core.services.searched_model import ship_searched

    workspace, _, _, data, _ = swept
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({**SPEC, "constraints": {"size_mb": {"max": 0.001}}}))
    out = tmp_path / "out"
    with pytest.raises(WorkbenchError, match="nothing to ship: no trial meets the constraints"):
        ship_searched(workspace.root, strict, out, data=data, imgsz=64)
    with pytest.raises(WorkbenchError, match="holds no workbench ledger"):
        ship_searched(tmp_path / "nowhere", strict, out, data=data, imgsz=64)
    assert not out.exists()


def test_the_shipped_variant_is_recorded_as_the_pruned_student_trained_child(swept, tmp_path, monkeypatch):
    import workbench.core.models.cards as cards
    from workbench.core.models.sources import open_source, record_source
    from workbench.core.services.searched_model import SearchedMismatch, record_searched, ship_searched
    from workbench.core.store.workspace import Workspace

    workspace, _, spec, data, _ = swept
    card = ship_searched(workspace.root, spec, tmp_path, data=data, imgsz=64)
    monkeypatch.setattr(cards, "searched_weights", lambda: tmp_path / cards.SEARCHED_NAME)
    study = Workspace(tmp_path / "study")
    parent = record_source(study, open_source("demo"))
    searched = record_searched(study, parent)
    chain = study.lineage(searched)
    assert [v.step for v in chain] == ["finetune", "prune", "source"] and chain[0].sha256 == card["sha256"]
    assert chain[0].params["trial"] == card["search"]["chosen_trial"] and chain[0].params["shipped"]
    student = record_source(study, open_source("student"))  # another architecture: the check refuses it
    with pytest.raises(SearchedMismatch, match="run the search again"):
        record_searched(study, student)


def _record(variant: str, imgsz: int, p50: float, map50_95: float | None = None) -> dict:
    return {"variant": f"{variant}-{imgsz}", "status": "ok", "imgsz": imgsz, "p50_ms": p50,
            "map50_95": map50_95, "map_imgsz": 320}  # fmt: skip


def test_the_searched_row_carries_the_ratio_and_the_parent_map_and_judges_both():
    from workbench.core.bench.searched import searched_markdown, searched_summary

    records = [
        _record("pytorch", 320, 24.0, 0.847),
        _record("ultralytics-openvino-int8", 640, 9.0),
        _record("searched-student-openvino-int8", 320, 1.0, 0.842),
        _record("searched-student-openvino-int8", 640, 4.05),
    ]
    card = {"search": {"name": "search-student", "chosen_trial": 1, "seconds_total": 10.0}, "recipe": {}}
    result = searched_summary(records, {"params": 1, "gflops": 2.0}, card)
    row = result["row"]
    assert row["ratio_vs_ultralytics_int8_640"] == pytest.approx(0.45) and row["map_drop"] == pytest.approx(0.005)
    assert row["fp32_parent_map50_95"] == 0.847 and row["map50_95"] == 0.842 and result["pass"]
    assert records[3]["ratio_vs_ultralytics_int8_640"] == pytest.approx(0.45)  # on the bench row itself
    assert "PASS" in searched_markdown(result) and "search-student" in searched_markdown(result)
    records[2]["map50_95"] = 0.83  # 0.017 below the parent: too far
    assert not searched_summary(records, {}, card)["pass"]
    records[2]["map50_95"] = 0.842
    paired = {"ratio": 0.55, "ratio_min": 0.5, "ratio_max": 0.6, "rounds": 10, "calls_per_round": 25}
    judged = searched_summary(records, {}, card, paired)  # the paired check decides, and it is too slow
    assert not judged["pass"] and "0.550 from the paired check" in searched_markdown(judged)
    assert "not shipped" in searched_markdown(None)


def test_the_shipped_searched_variant_matches_its_card_and_its_search(capsys):
    from workbench.cli import main
    from workbench.core.models.cards import searched_card, searched_weights, student_card
    from workbench.core.models.sources import resolve
    from workbench.core.services.searched_model import shipped_spec
    from workbench.core.store.atomic import sha256

    card = searched_card()
    assert card["sha256"] == sha256(searched_weights()) and card["parent_sha256"] == student_card()["sha256"]
    space = SearchSpace.from_yaml(shipped_spec())
    assert card["search"]["name"] == space.name and card["search"]["spec"] == shipped_spec().read_text()
    chosen = next(t for t in card["search"]["trials"] if t["number"] == card["search"]["chosen_trial"])
    assert chosen["feasible"] and space.feasible(chosen)
    faster = [t for t in card["search"]["trials"] if t["feasible"] and t["p50_ms"] < chosen["p50_ms"]]
    assert not faster  # the objective: the fastest feasible trial
    assert card["metrics"]["map50_95"] >= 0.837 and card["metrics"]["imgsz"] == 320
    assert resolve("searched").ref == str(searched_weights())
    assert main(["demo-model", "--searched"]) == 0 and card["sha256"] in capsys.readouterr().out
