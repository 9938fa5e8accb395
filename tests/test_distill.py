"""Distillation (Ultralytics' teacher/student training) and fine-tuning of a pruned student, on tiny sizes."""

import pytest

from workbench.core.errors import ConfigError
from workbench.core.models.cards import demo_weights
from workbench.core.models.sources import load_model
from workbench.core.optimize.distill import DistillConfig, check_teacher, distill, finetune
from workbench.core.optimize.prune import PruneConfig, model_stats, prune
from workbench.core.optimize.split_free import C2fSplitFree
from workbench.core.store.workspace import Workspace


def test_a_teacher_of_another_family_is_refused(demo_model):
    with pytest.raises(ConfigError, match="another family") as error:
        check_teacher(demo_model.model, load_model("yolo11n.yaml").model)  # 80 classes vs 4
    assert "nc" in error.value.problem and error.value.fix
    with pytest.raises(ConfigError):
        DistillConfig(weight=0)


def test_pruned_student_learns_from_its_parent_and_keeps_its_shape(tmp_path, tiny_dataset):
    ws = Workspace(tmp_path / "ws")
    parent = ws.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")
    student = prune(ws, parent, PruneConfig(ratio=0.3, round_to=16, imgsz=64))
    config = DistillConfig(epochs=1, imgsz=64, batch=4)
    distilled = distill(ws, student, parent, tiny_dataset.data_yaml, config)
    tuned = finetune(ws, student, tiny_dataset.data_yaml, config)
    variants = ws.variants().set_index("id")
    assert variants.loc[distilled, "params"]["teacher_id"] == parent
    assert variants.loc[tuned, "params"]["teacher_id"] is None
    history = variants.loc[distilled, "params"]["history"]
    assert len(history) == 1 and history[0]["train/dis_loss"] > 0  # the distillation loss was really on
    pruned_params = model_stats(load_model(ws.artifact_path(student)).model, 64)["params"]
    for variant in (distilled, tuned):
        net = load_model(ws.artifact_path(variant)).model
        assert model_stats(net, 64)["params"] == pruned_params  # training did not rebuild the full-width model
        assert any(isinstance(m, C2fSplitFree) for m in net.modules())
        assert not hasattr(net, "teacher_model")
