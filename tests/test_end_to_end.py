"""The fast OpenVINO path (`models.detector`) and the end-to-end comparison (`bench.end_to_end`), on the demo model
exported at 128 px and the tiny dataset. No timing is asserted: `make bench` checks speed, as ratios."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core.errors import ConfigError

IMGSZ = 128


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A workspace with the demo model recorded and exported to OpenVINO (fp32) at 128; (workspace, .pt, IR)."""
    from workbench.core.models.export import ExportConfig, export
    from workbench.core.models.sources import open_source, record_source
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("e2e") / "ws")
    base = record_source(workspace, open_source("demo"))
    ir = export(workspace, base, ExportConfig(format="openvino", imgsz=IMGSZ))
    return workspace, workspace.artifact_path(base), workspace.artifact_path(ir)


@pytest.fixture(scope="module")
def images(tiny_dataset):
    """The tiny val images (64 px squares), decoded, plus a non-square crop (so the letterbox pads)."""
    import cv2

    from workbench.core.data.checks import list_images

    frames = [cv2.imread(str(p)) for p in list_images(tiny_dataset.data_yaml, "val")]
    return [*frames, np.ascontiguousarray(frames[0][:40])]


@pytest.fixture(scope="module")
def fast(exported):
    from workbench.core.models.detector import DeploymentSpec, fast_detector

    return fast_detector(DeploymentSpec(exported[2], imgsz=IMGSZ, threads=1))


def test_fast_path_matches_open_detector_and_ultralytics(exported, images, fast):
    from workbench.core.measure.parity import matched_over_max
    from workbench.core.models.detector import DeploymentSpec, FastDetector, open_detector, ultralytics_detector

    assert isinstance(fast, FastDetector) and fast.context["preprocessing"].startswith("in the graph")
    ours = [fast(image) for image in images]
    plain_detector = open_detector(DeploymentSpec(exported[2], imgsz=IMGSZ, threads=1))
    ultralytics = ultralytics_detector(exported[2], IMGSZ)
    plain, theirs = [plain_detector(image) for image in images], [ultralytics(image) for image in images]
    assert sum(map(len, ours)) > 0
    # every box matched one-to-one at IoU >= 0.9 with the same class (the order of near-equal scores may differ:
    # OpenVINO computes in bf16 here, and the preprocessing is in the graph on one side only)
    assert matched_over_max(ours, plain) == 1.0 and matched_over_max(ours, theirs) == 1.0


def test_uint8_letterbox_and_nms_equal_the_numpy_steps(images):
    from workbench.core.models.detector import Postprocessing, Preprocessing, nms, prepare, to_original
    from workbench.core.models.detector.fast_path import _detections, fast_nms, letterbox_u8

    raw_pre = Preprocessing(color="bgr", scale=1.0, layout="nhwc", pad_value=7)
    for image in images:
        ours, theirs = letterbox_u8(image, IMGSZ, pad_value=7), prepare(image, IMGSZ, raw_pre)
        assert ours.batch.dtype == np.uint8 and np.array_equal(ours.batch, theirs.batch.astype(np.uint8))
        assert (ours.gain, ours.pad, ours.original_shape) == (theirs.gain, theirs.pad, theirs.original_shape)
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.uniform(0, IMGSZ, (1, 2, 500)), rng.uniform(4, 40, (1, 2, 500))], axis=1)
    raw = np.concatenate([raw, rng.uniform(0, 1, (1, 3, 500))], axis=1).astype(np.float32)
    for post in (Postprocessing(), Postprocessing(conf=0.6, iou=0.3, max_det=5), Postprocessing(conf=1.0)):
        assert np.array_equal(fast_nms(raw, post), nms(raw, post))
    for image in images:  # boxes mapped back exactly as `to_original` maps them
        prepared = letterbox_u8(image, IMGSZ)
        mapped = _detections(raw, prepared, Postprocessing())
        assert np.array_equal(mapped.boxes, to_original(nms(raw)[:, :4], prepared))


def test_detect_stream_keeps_the_order_and_equals_one_by_one(images, fast):
    from workbench.core.models.detector import detect_stream

    frames = [*images, *images[::-1]]
    one_by_one = [fast(image) for image in frames]
    for jobs in (1, 3):
        streamed = detect_stream(fast, frames, jobs=jobs)
        assert len(streamed) == len(frames)
        assert all(np.array_equal(a.rows(), b.rows()) for a, b in zip(streamed, one_by_one, strict=True))
    assert detect_stream(fast, []) == []
    with pytest.raises(ConfigError, match="jobs"):
        detect_stream(fast, frames, jobs=0)


def test_a_batched_stream_answers_every_image_in_order(exported, images, fast):
    from workbench.core.measure.parity import matched_over_max
    from workbench.core.models.detector import DeploymentSpec, detect_stream, fast_detector

    spec = DeploymentSpec(exported[2], imgsz=IMGSZ, threads=1)
    batched = fast_detector(spec, hint="throughput", batch=4)
    assert batched.batch == 4 and batched.context["batch"] == 4
    frames = [*images, *images[::-1]]  # 18 images: the last request is half full
    expected = [fast(image) for image in frames]
    found = detect_stream(batched, frames, jobs=2)
    assert [len(d) for d in found] == [len(d) for d in expected] and matched_over_max(found, expected) == 1.0
    assert matched_over_max([batched(image) for image in frames[:3]], expected[:3]) == 1.0  # one image, one slot
    with pytest.raises(ConfigError, match="batch"):
        fast_detector(spec, batch=0)


def test_other_artifacts_fall_back_to_open_detector(exported, images):
    from workbench.core.models.detector import DeploymentSpec, Detector, detect_stream, fast_detector, open_detector

    spec = DeploymentSpec(exported[1], imgsz=IMGSZ, threads=1)  # the .pt: PyTorch
    fallback = fast_detector(spec)
    assert isinstance(fallback, Detector) and fallback.runner.runtime == "pytorch"
    plain = open_detector(spec)
    expected = [plain(image) for image in images[:3]]
    found = detect_stream(fallback, images[:3], jobs=2)
    assert all(np.array_equal(a.rows(), b.rows()) for a, b in zip(found, expected, strict=True))
    with pytest.raises(ConfigError, match="HxWx3 uint8"):
        fallback(images[0].astype(np.float32))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64, 3), np.float32),
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((0, 64, 3), np.uint8),
        [[0, 0, 0]],
        None,
    ],
)
def test_a_bad_image_is_a_clear_config_error(fast, bad):
    from workbench.core.models.detector import detect_stream

    with pytest.raises(ConfigError, match="HxWx3 uint8 BGR image"):
        fast(bad)
    with pytest.raises(ConfigError, match="HxWx3 uint8 BGR image"):
        detect_stream(fast, [np.zeros((64, 64, 3), np.uint8), bad], jobs=2)


def test_spec_and_settings_are_checked(exported):
    from workbench.core.models.detector import DeploymentSpec, fast_detector

    with pytest.raises(ConfigError, match="imgsz 160"):
        fast_detector(DeploymentSpec(exported[2], imgsz=160))
    with pytest.raises(ConfigError, match="hint"):
        fast_detector(DeploymentSpec(exported[2], imgsz=IMGSZ), hint="fastest")


def test_end_to_end_on_four_images_returns_the_figures(exported, images):
    from workbench.core.bench.end_to_end import EndToEndConfig, end_to_end, end_to_end_markdown

    config = EndToEndConfig(rounds=2, calls=2, warmup=1, repeats=1)
    result = end_to_end(exported[2], images[:4], imgsz=IMGSZ, threads=1, config=config)
    for key in ("p50_ratio", "throughput_ratio", "match_rate", "latency", "throughput", "context", "targets"):
        assert key in result
    assert set(result["targets_met"]) == {"p50_ratio", "match_rate", "throughput_ratio"}
    assert result["match_rate"] == 1.0 and result["context"]["images"] == 4 and result["context"]["imgsz"] == IMGSZ
    assert result["context"]["workbench_precision"] and result["context"]["ultralytics_precision"]
    assert all(s["stream_match_rate"] == 1.0 for s in result["throughput"]["settings"])
    assert "End to end" in end_to_end_markdown(result)


def test_end_to_end_names_what_is_missing(exported):
    from workbench.core.bench.end_to_end import end_to_end

    with pytest.raises(ConfigError, match="no OpenVINO INT8 export at 128"):
        end_to_end(exported[0], [np.zeros((64, 64, 3), np.uint8)], imgsz=IMGSZ)
    with pytest.raises(ConfigError, match="needs images"):
        end_to_end(exported[2], [], imgsz=IMGSZ)
