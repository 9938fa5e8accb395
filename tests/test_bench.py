"""Pieces of `make bench` that need no measuring: bracketing the cross-checks, the markdown table."""

import pytest

from workbench.core.bench import _bracket, markdown_table


def test_bracket_averages_the_checks_around_a_row_and_reports_their_drift():
    merged = _bracket({"bare_loop_p50_ms": 10.0, "benchmark_app_median_ms": 9.0},
                      {"bare_loop_p50_ms": 12.0, "benchmark_app_median_ms": 11.0})
    assert merged["bare_loop_p50_ms"] == pytest.approx(11.0) and merged["benchmark_app_median_ms"] == 10.0
    assert merged["bare_loop_p50_drift"] == pytest.approx(2 / 11) and merged["benchmark_app_median_drift"] == 0.2
    assert _bracket({"bare_loop_p50_ms": 5.0}, {"cross_check_error": "x"})["bare_loop_p50_ms"] == 5.0


def test_markdown_table_has_a_row_per_record():
    text = markdown_table([{"variant": "a", "p50_ms": 1.23456, "benchmark_app_ratio": None},
                           {"variant": "b", "p50_ms": 2.0}])
    lines = text.splitlines()
    assert len(lines) == 4 and "| a |" in lines[2] and "1.235" in lines[2] and lines[1].startswith("|---|")
