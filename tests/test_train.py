"""Training through Ultralytics' trainer: progress, staged output, cancel, bad settings."""

import pytest

from workbench.core.errors import Cancelled, ConfigError, DatasetError
from workbench.core.models.sources import load_model
from workbench.core.optimize.train import TrainConfig, train
from workbench.core.progress import Progress

TINY = TrainConfig(epochs=1, imgsz=64, batch=4, workers=0, cache=False)


@pytest.mark.slow
def test_one_tiny_epoch_writes_loadable_weights_and_reports_progress(tmp_path, tiny_dataset):
    events: list[Progress] = []
    result = train(
        load_model("yolo11n.yaml"), tiny_dataset.data_yaml, tmp_path / "out" / "m.pt", TINY, progress=events.append
    )
    assert result.weights.is_file() and result.epochs == 1 and "metrics/mAP50-95(B)" in result.history[0]
    assert events[-1].done == events[-1].total == 2  # 8 images / batch 4
    model = load_model(result.weights)
    assert list(model.names.values()) == ["circle", "triangle", "square", "star"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.pt"]


@pytest.mark.slow
def test_cancel_from_progress_leaves_nothing(tmp_path, tiny_dataset):
    def cancel(event):
        raise Cancelled("stopped by the user")

    with pytest.raises(Cancelled):
        train(load_model("yolo11n.yaml"), tiny_dataset.data_yaml, tmp_path / "out" / "m.pt", TINY, progress=cancel)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_settings_and_data_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="multiple of 32"):
        TrainConfig(imgsz=100)
    with pytest.raises(DatasetError, match="does not exist"):
        train(object(), tmp_path / "none.yaml", tmp_path / "m.pt", TINY)
