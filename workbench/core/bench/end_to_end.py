"""End to end, image in and detections out: the workbench's fast OpenVINO path against Ultralytics' own predict on
the same export, the same decoded images and the same machine state.

Latency: batch 1, each image decoded once beforehand (decode is excluded from every figure; both sides get the
same BGR array), both detectors timed in alternating rounds of `calls` images so that a machine whose speed drifts
is compared with itself. Agreement: every image through both, boxes matched one-to-one at IoU >= 0.9 with the same
class, over the larger count. Throughput: all images, the workbench's `detect_stream` (the best of a few stream
settings, tried in the same run) against Ultralytics' predict loop, one image at a time as users run it, in
alternating repeats.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, check_imgsz
from ..measure.paired import compare_calls
from ..measure.parity import matched_over_max
from ..models.detector import DeploymentSpec, decode
from ..report.tables import markdown_table

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

TARGETS = {"p50_ratio": 0.5, "match_rate": 0.99, "throughput_ratio": 2.0}  # issue 13: at most, at least, at least
DECODE = "excluded: each image is decoded once beforehand and both sides get the same BGR array"


@dataclass(frozen=True)
class StreamSetting:
    """One way to run `detect_stream`: the compiled model's performance hint, streams and batch, and the requests
    in flight."""

    hint: str = "throughput"
    streams: int | None = None
    jobs: int | None = 4
    batch: int = 8

    @property
    def name(self) -> str:
        return f"{self.hint}-streams{self.streams or 'auto'}-jobs{self.jobs or 'auto'}-batch{self.batch}"


# Tried in every run, the best kept. Measured on 2 cores (2026-12-02, 100 images at 320, images/s): two streams
# (the throughput hint) of 8-image requests, 4 in flight, 330-380; of 4-image requests 335-360; of single images
# 290-300; one 2-thread stream (the latency hint) of single images, 2 in flight, 200-210. Ultralytics: 175-180.
STREAM_SETTINGS = (
    StreamSetting("throughput", None, 4, 8),
    StreamSetting("throughput", None, 4, 4),
    StreamSetting("none", 2, 4, 1),
)


@dataclass(frozen=True)
class EndToEndConfig:
    """How long each part runs; the defaults take about half a minute at 320 on 2 cores."""

    rounds: int = 10  # alternating latency rounds
    calls: int = 25  # images per detector per round
    warmup: int = 10  # untimed calls per detector first
    repeats: int = 3  # alternating throughput repeats over all images
    iou_match: float = 0.9
    stream_settings: tuple[StreamSetting, ...] = STREAM_SETTINGS

    def __post_init__(self):
        for name in ("rounds", "calls", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", "use the default")
        if not 0 < self.iou_match <= 1 or not self.stream_settings:
            raise ConfigError("iou_match must lie in (0, 1] and one stream setting at least", "use the defaults")


def end_to_end(
    source,
    images,
    imgsz: int = 320,
    threads: int = 2,
    *,
    config: EndToEndConfig = EndToEndConfig(),
    progress=None,
) -> dict:
    """Workbench fast path against `YOLO(exported).predict` on one OpenVINO export: latency, agreement, throughput.

    Args:
        source: an OpenVINO model folder, or a `Workspace` (its newest Ultralytics INT8 OpenVINO export at `imgsz`).
        images: image files or decoded HxWx3 uint8 BGR arrays (files are decoded once, before any timing).
    Returns:
        the figures, the ratios against `TARGETS`, `targets_met` and the context they were measured in.
    Raises:
        ConfigError: no images, a bad image or setting, or a workspace without that export.
    """
    from ..models.detector import fast_detector, ultralytics_detector
    from ..progress import emit

    artifact, frames = _artifact(source, check_imgsz(imgsz)), _frames(images)
    spec = DeploymentSpec(artifact, imgsz=imgsz, threads=threads)
    ours, theirs = fast_detector(spec), ultralytics_detector(artifact, imgsz, spec.postprocessing)
    for index in range(config.warmup):
        for detector in (ours, theirs):
            detector(frames[index % len(frames)])
    emit(progress, "end to end", 0, 3, "latency in alternating rounds")
    latency = _latency(ours, theirs, frames, config)
    emit(progress, "end to end", 1, 3, "agreement on every image")
    single = [ours(frame) for frame in frames]
    match_rate = matched_over_max(single, [theirs(frame) for frame in frames], config.iou_match)
    emit(progress, "end to end", 2, 3, "throughput")
    streams = {
        s.name: (s, fast_detector(spec, hint=s.hint, streams=s.streams, batch=s.batch)) for s in config.stream_settings
    }
    throughput = _throughput(streams, theirs, frames, single, config)
    emit(progress, "end to end", 3, 3)
    result = {
        "p50_ratio": latency["p50_ratio"],
        "throughput_ratio": throughput["workbench_images_per_s"] / throughput["ultralytics_images_per_s"],
        "match_rate": match_rate,
        "latency": latency,
        "throughput": throughput,
        "targets": TARGETS,
        "context": _context(artifact, frames, ours, theirs, imgsz, threads, config),
    }
    result["targets_met"] = {
        "p50_ratio": result["p50_ratio"] <= TARGETS["p50_ratio"],
        "match_rate": result["match_rate"] >= TARGETS["match_rate"],
        "throughput_ratio": result["throughput_ratio"] >= TARGETS["throughput_ratio"],
    }
    return result


def find_int8_export(workspace: Workspace, imgsz: int) -> Path:
    """The newest Ultralytics INT8 OpenVINO export at `imgsz` in the workspace (what the bench's
    `ultralytics-openvino-int8-<imgsz>` row runs).

    Raises:
        ConfigError: there is none.
    """
    for variant in workspace.ledger.variants(step="export", newest_first=True):
        params = variant.params
        if (params.get("format"), params.get("precision"), params.get("imgsz")) == ("openvino", "int8", imgsz):
            path = workspace.artifact_path(variant.id)
            if path.exists():
                return path
    raise ConfigError(
        f"no OpenVINO INT8 export at {imgsz} in {workspace.root}",
        f"export one: export(ws, base, ExportConfig(format='openvino', imgsz={imgsz}, precision='int8', data=...))",
    )


def _artifact(source, imgsz: int) -> Path:
    if hasattr(source, "ledger"):
        return find_int8_export(source, imgsz)
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"artifact {path} does not exist", "pass an OpenVINO model folder or a workspace")
    return path


def _frames(images) -> list[np.ndarray]:
    """Every image decoded once (files) or checked (arrays)."""
    from ..models.detector import check_image

    frames = [
        check_image(image) if isinstance(image, np.ndarray) else decode(Path(image).read_bytes(), str(image))
        for image in images
    ]
    if not frames:
        raise ConfigError("end to end needs images", "pass the val images of the dataset")
    return frames


def _latency(ours, theirs, frames: list[np.ndarray], config: EndToEndConfig) -> dict:
    """Per-image wall clock of both, in alternating rounds over the same images (`measure.paired.compare_calls`:
    `calls` images per detector per round, none discarded); `p50_ratio` is the median of the per-round p50 ratios
    (workbench / Ultralytics), `p50_ratio_pooled` the ratio of the pooled p50s."""
    detectors = {"workbench": ours, "ultralytics": theirs}
    calls = {name: _cycling(detector, frames) for name, detector in detectors.items()}
    paired = compare_calls(calls, rounds=config.rounds, round_s=0.0, warm_calls=0, discard=0, min_calls=config.calls)
    ratios = paired.round_ratios("workbench", "ultralytics")
    out = {"rounds": config.rounds, "calls_per_round": config.calls, "decode": DECODE}
    for name, found in paired.samples_ms.items():
        out[f"{name}_p50_ms"] = float(np.percentile(found, 50))
        out[f"{name}_p99_ms"] = float(np.percentile(found, 99))
        out[f"{name}_mean_ms"] = float(np.mean(found))
    out["p50_ratio"] = float(np.median(ratios))
    out["p50_ratio_pooled"] = out["workbench_p50_ms"] / out["ultralytics_p50_ms"]
    out["p99_ratio"] = out["workbench_p99_ms"] / out["ultralytics_p99_ms"]
    out["p50_ratio_min"], out["p50_ratio_max"] = float(min(ratios)), float(max(ratios))
    return out


def _cycling(detector, frames: list[np.ndarray]):
    """A no-argument call that runs `detector` on frame 0, 1, ... in turn (each round continues where the last one
    stopped, so both detectors see the same frames in a round)."""
    frame = itertools.cycle(frames)
    return lambda: detector(next(frame))


def _throughput(streams: dict, theirs, frames: list[np.ndarray], single: list, config: EndToEndConfig) -> dict:
    """Images per second over all frames: each stream setting and Ultralytics' loop, in alternating repeats (one
    pass over all frames per block, `measure.paired.compare_calls`; the median per side); the workbench's figure
    is its best setting's. Each setting's detections are checked against the one-by-one ones
    (`stream_match_rate`; the check runs inside the setting's timed pass)."""
    from ..models.detector import detect_stream

    for setting, detector in streams.values():
        detect_stream(detector, frames[: config.warmup or 1], jobs=setting.jobs)
    agree: dict[str, float] = {}

    def stream(name: str, setting: StreamSetting, detector):
        def call():
            found = detect_stream(detector, frames, jobs=setting.jobs)
            agree[name] = min(agree.get(name, 1.0), matched_over_max(found, single, config.iou_match))

        return call

    def loop():
        for frame in frames:
            theirs(frame)

    calls = {name: stream(name, *pair) for name, pair in streams.items()} | {"ultralytics": loop}
    paired = compare_calls(calls, rounds=config.repeats, round_s=0.0, warm_calls=0, discard=0, min_calls=1)
    runs = {name: [len(frames) / (ms / 1000) for ms in found] for name, found in paired.samples_ms.items()}
    medians = {name: float(np.median(values)) for name, values in runs.items()}
    best = max(streams, key=lambda name: medians[name])
    return {
        "images": len(frames),
        "repeats": config.repeats,
        "workbench_images_per_s": medians[best],
        "workbench_setting": asdict(streams[best][0]) | {"name": best},
        "ultralytics_images_per_s": medians["ultralytics"],
        "ultralytics_setting": "YOLO(exported).predict(image) in a loop, one image at a time",
        "settings": [
            {
                "name": name,
                **asdict(setting),
                "images_per_s": medians[name],
                "stream_match_rate": agree[name],
                "streams_compiled": detector.context["streams"],
            }
            for name, (setting, detector) in streams.items()
        ],
        "decode": DECODE,
    }


def _context(artifact: Path, frames, ours, theirs, imgsz: int, threads: int, config: EndToEndConfig) -> dict:
    import cv2
    import openvino
    import ultralytics

    from ..environment import usable_cores

    return {
        "artifact": str(artifact),
        "imgsz": imgsz,
        "batch": 1,
        "images": len(frames),
        "image_shapes": sorted({f"{f.shape[1]}x{f.shape[0]}" for f in frames}),
        "threads": threads,
        "ultralytics_threads": f"not set by Ultralytics: OpenVINO's default, every usable core ({usable_cores()})",
        "workbench_precision": ours.precision,
        "ultralytics_precision": theirs.precision,
        "workbench_path": "letterbox in uint8 (cv2), preprocessing in the OpenVINO graph (PrePostProcessor), "
        "zero-copy input, NMS on the anchors above conf (OpenCV NMSBoxes)",
        "ultralytics_path": "YOLO(exported).predict(image, imgsz, conf, iou, max_det, verbose=False)",
        "compiled": ours.context,
        "iou_match": config.iou_match,
        "decode": DECODE,
        "versions": {
            "openvino": openvino.get_version(),
            "ultralytics": ultralytics.__version__,
            "opencv": cv2.__version__,
            "numpy": np.__version__,
        },
    }


def end_to_end_markdown(summary: dict | None) -> str:
    """The bench's end-to-end section: the three ratios against their targets, the raw figures, the context."""
    lines = ["## End to end: workbench fast path vs Ultralytics predict", ""]
    if not summary:
        return "\n".join(lines + ["Not measured (no OpenVINO INT8 export at the size asked)."])
    if "error" in summary:
        return "\n".join(lines + [f"Not measured: {summary['error']}"])
    lat, thr, ctx, met = summary["latency"], summary["throughput"], summary["context"], summary["targets_met"]

    def verdict(key: str, sign: str) -> str:
        return f"{summary[key]:.3f} (target {sign} {summary['targets'][key]}: {'met' if met[key] else 'NOT met'})"

    lines += [
        f"OpenVINO INT8 export at {ctx['imgsz']}, batch 1, {ctx['threads']} threads, {ctx['images']} images; "
        f"decode {ctx['decode']}.",
        "",
        f"- p50 latency, workbench / Ultralytics: {verdict('p50_ratio', '<=')}; median of {lat['rounds']} "
        f"alternating rounds of {lat['calls_per_round']} images (per round {lat['p50_ratio_min']:.3f} to "
        f"{lat['p50_ratio_max']:.3f}; pooled {lat['p50_ratio_pooled']:.3f}). Workbench p50 "
        f"{lat['workbench_p50_ms']:.2f} ms, p99 {lat['workbench_p99_ms']:.2f} ms; Ultralytics p50 "
        f"{lat['ultralytics_p50_ms']:.2f} ms, p99 {lat['ultralytics_p99_ms']:.2f} ms.",
        f"- Match rate (IoU >= {ctx['iou_match']}, same class, over the larger count): {verdict('match_rate', '>=')}.",
        f"- Throughput, workbench / Ultralytics: {verdict('throughput_ratio', '>=')}; workbench "
        f"{thr['workbench_images_per_s']:.1f} images/s ({thr['workbench_setting']['name']}), Ultralytics "
        f"{thr['ultralytics_images_per_s']:.1f} images/s ({thr['ultralytics_setting']}); median of "
        f"{thr['repeats']} alternating repeats.",
        f"- Precision executed: workbench {ctx['workbench_precision']}, Ultralytics {ctx['ultralytics_precision']}; "
        f"Ultralytics' threads: {ctx['ultralytics_threads']}.",
        "",
    ]
    columns = ["name", "hint", "streams", "jobs", "batch", "streams_compiled", "images_per_s", "stream_match_rate"]
    return "\n".join(lines) + "\n" + markdown_table(thr["settings"], columns, digits={"images_per_s": 1})
