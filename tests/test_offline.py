"""Offline set-up: Ultralytics' switches, its font, and OpenVINO's telemetry consent."""

import os

from workbench.core import offline


def test_switches_are_set_when_core_is_imported():
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "False"
    assert os.environ["YOLO_CONFIG_DIR"]


def test_telemetry_is_declined_where_no_choice_was_made_and_a_choice_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert offline.decline_openvino_telemetry.__wrapped__() == "declined"
    consent = tmp_path / "intel" / "openvino_telemetry"
    assert consent.read_text() == "0"
    consent.write_text("1")
    assert offline.decline_openvino_telemetry.__wrapped__() == "user's own choice kept"
    assert consent.read_text() == "1"


def test_ultralytics_finds_a_local_font_and_its_integrations_are_off():
    from workbench.core.models.ultralytics_offline import ultralytics

    ultralytics()
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR
    from ultralytics.utils.checks import check_font

    assert check_font("Arial.ttf") == USER_CONFIG_DIR / "Arial.ttf"
    assert not any(SETTINGS[k] for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "wandb"))
