"""Pieces of `make bench` that need no measuring: bracketing the cross-checks, the markdown table, the verdict,
and a config that is checked before anything is generated."""

import pytest

from workbench.core.bench.cross_check import bracket as _bracket
from workbench.core.bench.run import BenchConfig
from workbench.core.errors import ConfigError
from workbench.core.report.tables import markdown_table


def test_bracket_averages_the_checks_around_a_row_and_reports_their_drift():
    merged = _bracket(
        {"bare_loop_p50_ms": 10.0, "benchmark_app_median_ms": 9.0},
        {"bare_loop_p50_ms": 12.0, "benchmark_app_median_ms": 11.0},
    )
    assert merged["bare_loop_p50_ms"] == pytest.approx(11.0) and merged["benchmark_app_median_ms"] == 10.0
    assert merged["bare_loop_p50_drift"] == pytest.approx(2 / 11) and merged["benchmark_app_median_drift"] == 0.2
    assert _bracket({"bare_loop_p50_ms": 5.0}, {"cross_check_error": "x"})["bare_loop_p50_ms"] == 5.0


def test_markdown_table_has_a_row_per_record_and_no_nan():
    rows = [{"variant": "a", "p50_ms": 1.23456, "benchmark_app_ratio": None}, {"variant": "b", "p50_ms": float("nan")}]
    lines = markdown_table(rows, ["variant", "p50_ms", "benchmark_app_ratio"]).splitlines()
    assert len(lines) == 4 and lines[2] == "| a | 1.235 |  |" and lines[3] == "| b |  |  |"
    assert lines[1].startswith("|---|") and "nan" not in "\n".join(lines)


@pytest.mark.parametrize("changes", [{"threads": 0}, {"imgsizes": (-5,)}, {"imgsizes": (100,)}, {"seconds": 0}])
def test_bad_bench_settings_are_refused_before_any_work(changes):
    with pytest.raises(ConfigError):
        BenchConfig(**changes)


def test_optimized_verdict_reads_the_rows_it_names(monkeypatch):
    import workbench.core.bench.optimized as optimized
    from workbench.core.bench.optimized import optimized_markdown

    monkeypatch.setattr(optimized, "student_card", lambda: {"recipe": {"name": "demo-best"}})
    records = [
        {"variant": "pytorch-320", "status": "ok", "imgsz": 320, "p50_ms": 24.0, "map50_95": 0.845, "map_imgsz": 320},
        {
            "variant": "ultralytics-openvino-int8-640",
            "status": "ok",
            "imgsz": 640,
            "p50_ms": 15.0,
            "map50_95": 0.843,
            "map_imgsz": 320,
        },
        {
            "variant": "pruned-student-openvino-int8-320",
            "status": "ok",
            "imgsz": 320,
            "p50_ms": 3.0,
            "map50_95": 0.838,
            "map_imgsz": 320,
        },
        {
            "variant": "pruned-student-openvino-int8-640",
            "status": "ok",
            "imgsz": 640,
            "p50_ms": 10.5,
            "map50_95": 0.838,
            "map_imgsz": 320,
        },
    ]
    stats = {"pruned-student-openvino-int8": {"params": 999164, "gflops": 2.447}}
    result = optimized.summary(records, stats)
    assert result["ratio_640"] == pytest.approx(0.7) and result["map_drop"] == pytest.approx(0.007)
    assert result["pass"]
    text = optimized_markdown(result)
    assert "| pruned-student-openvino-int8 | 999164 | 2.447 | 3.00 | 10.50 | 0.8380 |" in text and "PASS" in text
    records[3]["p50_ms"] = 12.0  # 0.8x the reference: slower than the target allows
    assert not optimized.summary(records, stats)["pass"]
    paired = {"ratio": 0.69, "ratio_min": 0.66, "ratio_max": 0.71, "rounds": 10, "calls_per_round": 25}
    judged = optimized.summary(records, stats, paired)  # the two rows drifted apart; alternating rounds did not
    assert judged["pass"] and judged["verdict_ratio"] == 0.69 and judged["ratio_640"] == pytest.approx(0.8)
    assert "0.690 from the paired check; the two rows give 0.800" in optimized_markdown(judged)
    theirs = [15.0, 14.0, 15.5, 14.5, 15.0, 14.8]
    steady = [round(0.69 * t, 3) for t in theirs]
    busy = [0.69 * t * f for t, f in zip(theirs, (0.5, 1.25, 0.55, 1.15, 0.5, 1.2), strict=True)]
    for ours, expected in ((steady, "holds"), (busy, "inconclusive")):  # the doctor's rule on the paired rounds
        paired |= {"a_rounds_ms": ours, "b_rounds_ms": theirs, "ratio": 0.69}
        judged = optimized.summary(records, stats, paired)
        assert judged["latency_verdict"] == expected and judged["pass"] == (expected == "holds")
    assert "INCONCLUSIVE (the paired rounds disagree" in optimized_markdown(judged)


def test_litert_rows_are_skipped_with_the_reason_when_missing(monkeypatch):
    import workbench.core.bench.litert as litert

    monkeypatch.setattr(litert.importlib.util, "find_spec", lambda name: None)
    rows, skipped = litert.litert_rows(None, 1, "unused.yaml", 320)
    assert rows == [] and [s["variant"] for s in skipped] == ["litert-fp32-320", "litert-int8-320"]
    assert "pip install -e '.[litert]'" in skipped[0]["reason"]
    text = litert.litert_markdown(litert.litert_summary([], skipped))
    assert "skipped litert-int8-320" in text


def test_litert_int8_over_fp32_ratio():
    from workbench.core.bench.litert import litert_markdown, litert_summary

    rows = [
        {"variant": "litert-fp32-320", "runtime": "litert", "status": "ok", "imgsz": 320, "p50_ms": 30.0},
        {
            "variant": "litert-int8-320",
            "runtime": "litert",
            "status": "ok",
            "imgsz": 320,
            "p50_ms": 12.0,
            "precision": "int8",
        },
        {"variant": "onnx-fp32-320", "runtime": "onnxruntime", "status": "ok", "imgsz": 320, "p50_ms": 25.0},
    ]
    summary = litert_summary(rows, [])
    assert summary["ratios"] == [
        {
            "imgsz": 320,
            "fp32_p50_ms": 30.0,
            "int8_p50_ms": 12.0,
            "int8_over_fp32": 0.4,
            "int8_speedup": 2.5,
            "int8_precision": "int8",
        }
    ]
    assert "| 320 | 30.000 | 12.000 | 0.400 | 2.500 | int8 |" in litert_markdown(summary)


def test_end_to_end_section_states_each_target_and_its_verdict():
    from workbench.core.bench.end_to_end import TARGETS, end_to_end_markdown

    summary = {
        "p50_ratio": 0.55,
        "throughput_ratio": 2.4,
        "match_rate": 1.0,
        "targets": TARGETS,
        "targets_met": {"p50_ratio": False, "match_rate": True, "throughput_ratio": True},
        "latency": {
            "rounds": 10,
            "calls_per_round": 25,
            "p50_ratio_min": 0.41,
            "p50_ratio_max": 0.7,
            "p50_ratio_pooled": 0.57,
            "workbench_p50_ms": 6.4,
            "workbench_p99_ms": 15.0,
            "ultralytics_p50_ms": 11.2,
            "ultralytics_p99_ms": 18.4,
        },
        "throughput": {
            "workbench_images_per_s": 237.4,
            "workbench_setting": {"name": "none-streams2-jobs4"},
            "ultralytics_images_per_s": 97.5,
            "ultralytics_setting": "predict loop",
            "repeats": 3,
            "settings": [{"name": "none-streams2-jobs4", "hint": "none", "images_per_s": 237.4}],
        },
        "context": {
            "imgsz": 320,
            "threads": 2,
            "images": 100,
            "decode": "excluded",
            "iou_match": 0.9,
            "workbench_precision": "int8+bf16",
            "ultralytics_precision": "int8+bf16",
            "ultralytics_threads": "default",
        },
    }
    text = end_to_end_markdown(summary)
    assert "0.550 (target <= 0.5: NOT met)" in text and "2.400 (target >= 2.0: met)" in text
    assert "1.000 (target >= 0.99: met)" in text and "| none-streams2-jobs4 | none |" in text
    assert "Not measured" in end_to_end_markdown(None) and "boom" in end_to_end_markdown({"error": "boom"})


def test_bench_end_to_end_needs_the_int8_row_and_records_a_failure(monkeypatch, tmp_path):
    import workbench.core.bench.end_to_end as e2e
    from workbench.core.bench.optimized import Row
    from workbench.core.bench.run import _end_to_end

    class Workspace:
        def artifact_path(self, variant_id):
            return tmp_path / f"v{variant_id}_openvino_model"

    config = BenchConfig(imgsizes=(320, 640))
    assert _end_to_end([Row("onnx", 1, None, 320)], Workspace(), "data.yaml", config, None) is None

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(e2e, "end_to_end", broken)
    monkeypatch.setattr("workbench.core.data.checks.list_images", lambda data, split: [])
    found = _end_to_end([Row("ultralytics-int8", 7, None, 320)], Workspace(), "data.yaml", config, None)
    assert found["error"] == "RuntimeError: boom" and found["imgsz"] == 320 and "v7_" in found["artifact"]
