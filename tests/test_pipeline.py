"""Recipes: parsing and checks before work, step-by-step recording, failure and cancellation."""

import pytest

from workbench.core.errors import Cancelled, ConfigError
from workbench.core.models.cards import demo_weights
from workbench.core.optimize.recipes import PipelineError, Recipe, preflight, run_recipe, shipped_recipes
from workbench.core.report.tables import pipeline_table
from workbench.core.store.workspace import Workspace

TINY = {"imgsz": [64], "seconds": 0.3, "warmup_s": 0.1, "min_runs": 3}


@pytest.fixture()
def ws_parent(tmp_path):
    ws = Workspace(tmp_path / "ws")
    return ws, ws.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")


@pytest.mark.parametrize(
    "data,problem",
    [
        ({}, "no 'steps'"),
        ({"steps": [{"shrink": {}}]}, "unknown kind 'shrink'"),
        ({"steps": [{"prune": {"ratio": 2}}]}, "step 1 \\(prune\\): pruning ratio"),
        ({"steps": [{"prune": {"sparsity": 0.3}}]}, "unknown option"),
        ({"steps": [{"distill": {"epochs": 1}}]}, "names no teacher"),
        ({"steps": [{"prune": {}, "distill": {}}]}, "single"),
        ({"steps": ["prune"], "extra": 1}, "unknown keys"),
        ({"steps": ["prune"], "measure": {"latency": 1}}, "measure: option latency must be true or false, got 1"),
        (
            {"steps": ["prune"], "measure": {"imgsz": "abc"}},
            "measure: option imgsz must be a list \\(a whole number each\\)",
        ),
        ({"steps": ["prune"], "measure": {"imgsz": [-5]}}, "imgsz must be a multiple of 32"),
        ({"steps": ["prune"], "measure": {"latency_imgsz": [640]}}, "measure: unknown option 'latency_imgsz'"),
        ({"steps": ["prune"], "measure": [640]}, "'measure' must be a mapping"),
    ],
)
def test_bad_recipes_name_the_problem(data, problem):
    with pytest.raises(ConfigError, match=problem) as error:
        Recipe.from_dict(data)
    assert error.value.fix


def test_recipes_round_trip_and_ship():
    assert {"demo-short", "demo-best"} <= set(shipped_recipes())
    for name in shipped_recipes():
        recipe = Recipe.load(name)
        assert Recipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(ConfigError, match="demo-short"):
        Recipe.load("no-such-recipe")


def test_preflight_catches_order_family_and_calibration(ws_parent, tiny_dataset, tmp_path):
    ws, parent = ws_parent
    after_export = Recipe.from_dict({"steps": [{"quantize": {"imgsz": 64, "calibration_images": 8}}, "prune"]})
    with pytest.raises(ConfigError, match="step 2 \\(prune\\) needs a PyTorch model"):
        preflight(ws, after_export, parent, tiny_dataset.data_yaml)
    too_many = Recipe.from_dict({"steps": [{"quantize": {"imgsz": 64, "calibration_images": 8}}]})
    preflight(ws, too_many, parent, tiny_dataset.data_yaml)  # 8 train images: enough
    from workbench.core.models.checkpoints import save_checkpoint
    from workbench.core.models.sources import load_model

    other = save_checkpoint(load_model("yolo11n.yaml").model, tmp_path / "coco-teacher.pt")
    wrong_teacher = Recipe.from_dict({"steps": [{"distill": {"teacher": str(other), "epochs": 1}}]})
    with pytest.raises(ConfigError, match="step 1 \\(distill\\): the teacher is of another family"):
        preflight(ws, wrong_teacher, parent, tiny_dataset.data_yaml)
    assert len(ws.variants()) <= 2  # nothing but the parent (and the imported teacher) was recorded


def test_a_recipe_records_and_measures_every_step(ws_parent, tiny_dataset):
    ws, parent = ws_parent
    recipe = Recipe.from_dict(
        {
            "steps": [
                {"prune": {"ratio": 0.3, "round_to": 16, "imgsz": 64}},
                {"distill": {"teacher": "parent", "epochs": 1, "imgsz": 64, "batch": 4}},
                {"quantize": {"imgsz": 64, "calibration_images": 8}},
            ],
            "measure": TINY,
        }
    )
    events = []
    result = run_recipe(ws, recipe, parent, tiny_dataset.data_yaml, progress=events.append)
    assert [s.kind for s in result.steps] == ["prune", "distill", "quantize"]
    variants = ws.variants().set_index("id")
    pruned, distilled, quantized = (s.variants[0] for s in result.steps)
    assert variants.loc[pruned, "parent_id"] == parent and variants.loc[distilled, "parent_id"] == pruned
    assert variants.loc[variants.loc[quantized, "parent_id"], "parent_id"] == distilled  # via the float export
    measured = ws.measurements()
    for step in result.steps:
        kinds = set(measured[measured["variant_id"].isin(step.variants)]["kind"])
        assert kinds == {"latency", "accuracy"}, step
    rows = pipeline_table(ws, result)
    assert [r["step"] for r in rows] == ["input", "1:prune", "2:distill", "3:quantize"]
    assert all(r.get("p50_ms_64") for r in rows) and rows[-1]["precision"].startswith("int8")
    assert {"pipeline", "prune", "train", "calibrate"} <= {e.stage for e in events}


def test_a_failing_step_keeps_earlier_variants(ws_parent, tiny_dataset, monkeypatch):
    ws, parent = ws_parent
    import workbench.core.optimize.quantize as quantize_module

    def broken(*args, **kwargs):
        raise RuntimeError("simulated converter crash")

    monkeypatch.setattr(quantize_module, "quantize", broken)
    recipe = Recipe.from_dict(
        {
            "steps": [{"prune": {"ratio": 0.3, "imgsz": 64}}, {"quantize": {"imgsz": 64, "calibration_images": 8}}],
            "measure": {**TINY, "accuracy": False},
        }
    )
    with pytest.raises(PipelineError, match="step 2 \\(quantize\\) failed: RuntimeError: simulated") as error:
        run_recipe(ws, recipe, parent, tiny_dataset.data_yaml)
    assert [s.kind for s in error.value.completed] == ["prune"]
    pruned = error.value.completed[0].variants[0]
    assert ws.artifact_path(pruned).is_file() and set(ws.variants()["step"]) == {"source", "prune"}


def test_cancelling_a_step_leaves_the_ledger_as_it_was(ws_parent, tiny_dataset):
    ws, parent = ws_parent
    recipe = Recipe.from_dict(
        {"steps": [{"finetune": {"epochs": 1, "imgsz": 64, "batch": 4}}], "measure": {**TINY, "accuracy": False}}
    )

    def cancel_in_training(event):
        if event.stage == "train" and event.done >= 1:
            raise Cancelled("cancelled by the user", "")

    before = (len(ws.variants()), sorted(p.name for p in ws.artifacts.iterdir()))
    with pytest.raises(Cancelled):
        run_recipe(ws, recipe, parent, tiny_dataset.data_yaml, measure_input=False, progress=cancel_in_training)
    assert (len(ws.variants()), sorted(p.name for p in ws.artifacts.iterdir())) == before
