"""Where the time of one image goes: decode, preprocess (letterbox), inference, postprocess (NMS), on real images."""

from __future__ import annotations

import time
from pathlib import Path

from ..models.detector import ImageDecodeError, decode, postprocess, preprocess
from .latency import LatencyConfig, LatencyStats, time_calls

STAGES = ("decode", "preprocess", "inference", "postprocess")
STAGE_TIMING = LatencyConfig(warmup_runs=2, warmup_s=0.2, min_runs=10, min_time_s=0.5)


def stage_breakdown(
    runner, images: list[Path], imgsz: int, config: LatencyConfig = STAGE_TIMING, *, clock=time.perf_counter
) -> dict[str, LatencyStats]:
    """Latency of each stage on real images (file bytes read beforehand, so disk I/O is not counted)."""
    if not images:
        raise ImageDecodeError("no images for the stage breakdown", "pass at least one JPEG or PNG file")
    encoded = [(Path(p).name, Path(p).read_bytes()) for p in images]
    decoded = [decode(data, name) for name, data in encoded]
    boxed = [preprocess(image, imgsz) for image in decoded]
    raws = [runner(b.batch) for b in boxed]
    jobs = {
        "decode": lambda i: decode(encoded[i][1], encoded[i][0]),
        "preprocess": lambda i: preprocess(decoded[i], imgsz),
        "inference": lambda i: runner(boxed[i].batch),
        "postprocess": lambda i: postprocess(raws[i], boxed[i]),
    }
    return {stage: time_calls(_cycling(jobs[stage], len(encoded)), config, clock=clock) for stage in STAGES}


def _cycling(job, count: int):
    """A no-argument call that runs `job` on image 0, 1, ... count-1, 0, ... in turn."""
    cursor = iter(range(10**12))

    def call():
        return job(next(cursor) % count)

    return call
