"""Structured pruning (Torch-Pruning) of YOLO11 / YOLOv8 and unstructured sparsity (NNCF), on tiny sizes."""

import copy

import pytest
import torch

from workbench.core.errors import ConfigError
from workbench.core.models.checkpoints import save_checkpoint
from workbench.core.models.export import ExportConfig, export
from workbench.core.models.runners import example_input, open_runner
from workbench.core.models.sources import load_model
from workbench.core.models.summary import model_stats
from workbench.core.optimize.prune import PruneConfig, PruningError, channel_prune, check_prunable, prune
from workbench.core.optimize.sparsify import NO_SPEEDUP, SparsifyConfig, sparsify
from workbench.core.optimize.split_free import C2fSplitFree, C2PSASplitFree, make_split_free
from workbench.core.store.workspace import Workspace


def test_split_free_blocks_are_output_identical(demo_model):
    net = copy.deepcopy(demo_model.model).float().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)[0]
        replaced = make_split_free(net)
        after = net(x)[0]
    assert replaced == 9  # YOLO11n: 8 C3k2 and 1 C2PSA
    assert sum(isinstance(m, C2fSplitFree) for m in net.modules()) == 8
    assert sum(isinstance(m, C2PSASplitFree) for m in net.modules()) == 1
    assert not any(m.training for m in net.modules())  # replacements must not come back in training mode
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        dict(ratio=0),
        dict(ratio=1),
        dict(ratio=1.5),
        dict(ratio=0.3, steps=0),
        dict(ratio=0.3, stage_ratios={"4": 1.0}),
        dict(importance="random"),
    ],
)
def test_bad_pruning_options_fail_before_any_work(config):
    with pytest.raises(ConfigError) as error:
        PruneConfig(**config)
    assert error.value.fix


def test_a_stage_ratio_naming_a_missing_layer_is_refused(demo_model):
    with pytest.raises(ConfigError, match="stage_ratios"):
        channel_prune(copy.deepcopy(demo_model.model).float(), PruneConfig(stage_ratios={"99": 0.2}))


def test_the_pruner_refuses_what_it_cannot_handle():
    classifier = load_model("yolo11n.yaml").model  # detection is fine ...
    check_prunable(classifier)
    from workbench.core.models.ultralytics_offline import YOLO

    with pytest.raises(PruningError, match="detection model"):
        check_prunable(YOLO("yolo11n-cls.yaml").model)  # ... a classifier is not


def test_stage_ratio_zero_keeps_that_layer_whole(demo_model):
    net = channel_prune(copy.deepcopy(demo_model.model).float(), PruneConfig(ratio=0.3, stage_ratios={"7": 0}))
    assert net.model[7].conv.out_channels == demo_model.model.model[7].conv.out_channels
    assert net.model[5].conv.out_channels < demo_model.model.model[5].conv.out_channels


@pytest.mark.parametrize("architecture", ["yolo11n.yaml", "yolov8n.yaml"])
def test_yaml_models_prune_at_30_percent_and_export(architecture, tmp_path):
    ws = Workspace(tmp_path / "ws")
    start = save_checkpoint(load_model(architecture).model, tmp_path / "start.pt")
    parent = ws.add_artifact(start, f"{architecture.split('.')[0]}.pt", step="source", format="pt")
    child = prune(ws, parent, PruneConfig(ratio=0.3, imgsz=64))
    row = ws.variants().set_index("id").loc[child]
    assert row["step"] == "prune" and row["parent_id"] == parent
    before, after = row["params"]["before"], row["params"]["after"]
    assert after["params"] < 0.8 * before["params"] and after["gflops"] < before["gflops"]
    pruned = load_model(ws.artifact_path(child)).model  # reloads from disk as an Ultralytics model
    assert model_stats(pruned, 64)["params"] == after["params"]
    head = pruned.model[-1]
    for fmt in ("onnx", "openvino"):
        exported = export(ws, child, ExportConfig(format=fmt, imgsz=64))
        runner = open_runner(ws.artifact_path(exported))
        out = runner(example_input(runner, 64))[0]
        assert out.shape == (1, 4 + head.nc, 84)  # the Detect head's outputs are intact


def test_sparsify_zeroes_weights_and_says_it_buys_no_speed(tmp_path, demo_model):
    from workbench.core.models.cards import demo_weights

    ws = Workspace(tmp_path / "ws")
    parent = ws.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")
    child = sparsify(ws, parent, SparsifyConfig(ratio=0.5, imgsz=64))
    params = ws.variants().set_index("id").loc[child, "params"]
    assert params["before"]["sparsity"] < 0.01 and 0.45 <= params["after"]["sparsity"] <= 0.5
    assert params["after"]["weights_fp16_gzip_bytes"] < 0.9 * params["before"]["weights_fp16_gzip_bytes"]
    assert params["note"] == NO_SPEEDUP
    net = load_model(ws.artifact_path(child)).model
    assert model_stats(net, 64)["params"] == model_stats(demo_model.model, 64)["params"]  # same shapes
    with pytest.raises(ConfigError):
        SparsifyConfig(ratio=1.0)


def test_pruning_in_steps_fine_tunes_between_them(tmp_path, tiny_dataset):
    from workbench.core.models.cards import demo_weights

    ws = Workspace(tmp_path / "ws")
    parent = ws.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")
    events = []
    config = PruneConfig(ratio=0.3, steps=2, finetune_epochs=1, finetune_imgsz=64, imgsz=64)
    child = prune(ws, parent, config, data_yaml=tiny_dataset.data_yaml, progress=events.append)
    params = ws.variants().set_index("id").loc[child, "params"]
    assert params["after"]["params"] < params["before"]["params"]
    assert [e.message for e in events if e.stage == "prune"][:2] == ["step 1/2", "step 2/2"]
    assert any(e.stage == "train" for e in events)  # the fine-tuning ran between the steps
    with pytest.raises(ConfigError, match="needs a dataset"):
        prune(ws, parent, config)
