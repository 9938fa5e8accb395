"""Cross-checks of a bench row: a bare timing loop and OpenVINO's benchmark_app around it, and paired timing of two
artifacts in alternating rounds (`measure.paired.compare_calls`), so that a machine whose speed drifts is compared
with itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..measure.paired import FAILS, HOLDS, INCONCLUSIVE, compare_calls, ratio_bound, timed_block
from ..models.runners import RuntimeOptions, example_input, open_runner


def bare_loop(path: Path, options: RuntimeOptions, imgsz: int, runs: int) -> float:
    """The simplest possible timing of the same artifact: load, 10 calls, then `runs` timed calls; the median."""
    runner = open_runner(path, options)
    x = example_input(runner, imgsz)
    for _ in range(10):
        runner(x)
    return float(np.median(timed_block(lambda: runner(x), calls=runs)))


def benchmark_app(path: Path, precision: str | None, threads: int, seconds: int) -> float | None:
    """Median latency from OpenVINO's benchmark_app, sync API, one stream, `threads`; None if unavailable."""
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if tool is None:
        return None
    xml = next(Path(path).glob("*.xml"))
    command = [
        tool,
        "-m",
        str(xml),
        "-d",
        "CPU",
        "-hint",
        "none",
        "-nstreams",
        "1",
        "-nthreads",
        str(threads),
        "-api",
        "sync",
        "-t",
        str(seconds),
    ]
    if precision:
        command += ["-infer_precision", precision]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 6 + 120)
    found = re.search(r"Median:\s+([\d.]+)\s*ms", run.stdout)
    return float(found.group(1)) if found else None


def bracket(before: dict, after: dict) -> dict:
    """Mean of the checks before and after a row, and how far they drifted apart (a noise gauge)."""
    merged = {**before, **after}
    for key in ("bare_loop_p50_ms", "benchmark_app_median_ms"):
        pair = [c[key] for c in (before, after) if c.get(key)]
        if pair:
            merged[key] = sum(pair) / len(pair)
            merged[key.replace("_ms", "_drift")] = abs(pair[0] - pair[-1]) / merged[key]
    return merged


def paired_verdict(paired: dict | None, target_ratio: float) -> str | None:
    """Whether a paired check shows a / b <= `target_ratio` by the doctor's rule (`measure.paired.ratio_bound`):
    b / a's 95% lower bound at or above 1 / target holds, its upper bound below it does not hold, else the rounds
    were too spread to say ("inconclusive"). None where the check kept no per-round times (older results)."""
    if not paired or not paired.get("a_rounds_ms") or not paired.get("b_rounds_ms"):
        return None
    return ratio_bound(paired["b_rounds_ms"], paired["a_rounds_ms"]).verdict(1 / target_ratio)


def latency_verdict(ratio: float | None, paired: dict | None, target: float) -> str | None:
    """holds / does not hold / inconclusive for "ours is at most `target` x theirs": the paired check's rounds judged
    by the doctor's rule (`paired_verdict`), or, where there are no rounds, the ratio itself; None without one."""
    judged = paired_verdict(paired, target)
    if judged is not None or ratio is None:
        return judged
    return HOLDS if ratio <= target else FAILS


def verdict_word(summary: dict) -> str:
    """PASS, FAIL, or INCONCLUSIVE where the paired rounds were too spread to judge the latency target."""
    if summary.get("latency_verdict") == INCONCLUSIVE and not summary["pass"]:
        return "INCONCLUSIVE (the paired rounds disagree: the machine was busy; rerun on a quiet one)"
    return "PASS" if summary["pass"] else "FAIL"


def paired_ratio(path_a, path_b, options: RuntimeOptions, imgsz: int, *, rounds: int = 10, calls: int = 25) -> dict:
    """Time two artifacts in alternating rounds on the same input; the median of the per-round p50 ratios a / b.

    On a machine whose speed drifts from minute to minute, rows measured one after the other can disagree by
    more than the effect; alternating rounds compare the two under the same conditions.
    """
    runners = {"a": open_runner(path_a, options), "b": open_runner(path_b, options)}
    x = example_input(runners["a"], imgsz)
    timed = {name: (lambda runner=runner: runner(x)) for name, runner in runners.items()}
    paired = compare_calls(timed, rounds=rounds, round_s=0.0, warm_calls=10, discard=0, min_calls=calls)
    a, b = paired.rounds_ms["a"], paired.rounds_ms["b"]
    ratios = paired.round_ratios("a", "b")
    return {
        "ratio": float(np.median(ratios)),
        "a_rounds_ms": [round(v, 4) for v in a],
        "b_rounds_ms": [round(v, 4) for v in b],
        "bound": paired.bound("a", "b").as_dict(),
        "ratio_min": float(min(ratios)),
        "ratio_max": float(max(ratios)),
        "a_p50_ms": float(np.median(a)),
        "b_p50_ms": float(np.median(b)),
        "rounds": rounds,
        "calls_per_round": calls,
        "imgsz": imgsz,
    }
