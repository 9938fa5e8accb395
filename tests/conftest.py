"""Shared fixtures: tiny generated datasets and a demo-trained model, all offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # before anything imports Ultralytics
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # socket_guard


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """8 train / 8 val images at 64 px: enough for every code path, seconds to make."""
    from workbench.core.data.generate import ShapesConfig, generate_shapes

    return generate_shapes(tmp_path_factory.mktemp("data"), ShapesConfig(seed=3, train=8, val=8, imgsz=64))


@pytest.fixture(scope="session")
def demo_model():
    from workbench.core.models.sources import load_model

    return load_model("demo")
