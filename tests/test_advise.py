"""The advisor and its estimator: requirements checked, efficiencies fitted, each ranking rule moves the ranking."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from workbench.core.advise.advisor import TRADE_OFFS, advise
from workbench.core.advise.catalog import Figure, Target
from workbench.core.advise.estimate import (
    Observation,
    cpu_peak_factor,
    cross_check,
    fit,
    median_abs_error_pct,
    precision_class,
    prior,
)
from workbench.core.advise.profile import ModelProfile
from workbench.core.advise.requirements import HOURS_PER_MONTH, Requirements
from workbench.core.errors import ConfigError

MODEL = ModelProfile("yolo11n", 640, 6.5, 2_590_620, 1_638_400, 52_000_000)


def _figure(value, unit):
    return Figure(float(value), unit, "test figure")


def _target(id, environment, device="cpu", *, fp32=1000.0, int8=None, memory_gb=8, power_w=None, price=0.2, **kw):
    peak = {"fp32": _figure(fp32, "GFLOP/s")}
    if int8:
        peak["int8"] = _figure(int8, "GOP/s")
    unit = "USD/hour" if environment == "cloud" else "USD"
    return Target(
        id=id,
        name=id,
        environment=environment,
        provider="test",
        device=device,
        peak=peak,
        memory=_figure(memory_gb, "GB"),
        power=None if power_w is None else _figure(power_w, "W"),
        price=_figure(price, unit),
        price_date="2026-11",
        runtimes=tuple(kw.pop("runtimes", ("onnxruntime",))),
        **kw,
    )


CLOUD = _target("cloud-cpu", "cloud", fp32=4000, price=0.2)  # fast and cheap per month at one site
EDGE = _target("edge-box", "edge", fp32=300, int8=4800, memory_gb=4, power_w=10, price=250)
ON_PREM = _target("server", "on_prem", fp32=2000, power_w=300, price=6000)
TARGETS = [CLOUD, EDGE, ON_PREM]


def _best(requirements, targets=TARGETS):
    advice = advise([MODEL], requirements, targets)
    return advice, advice.best.target.id if advice.best else None


def _option(advice, target_id):
    return next(o for o in advice.options if o.target.id == target_id)


# -- requirements -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"latency_p99_ms": 0}, "latency_p99_ms"),
        ({"peak_images_per_s": 1, "mean_images_per_s": 5}, "peak_images_per_s"),
        ({"fleet_size": 0}, "fleet_size"),
        ({"connectivity": "sometimes"}, "connectivity"),
        ({"monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"imgsz": 30}, "imgsz"),
        ({"power_envelope_w": 0}, "power_envelope_w"),
        ({"fleet_size": "ten"}, "fleet_size"),
        ({"latency_budget": 30}, "latency_budget"),
    ],
)
def test_bad_requirements_are_refused_naming_the_field(bad, named):
    with pytest.raises(ConfigError, match=named):
        Requirements.from_dict(bad)


def test_images_per_month_and_the_encoded_image_follow_the_requirements():
    need = Requirements(mean_images_per_s=2, fleet_size=3, imgsz=320)
    assert need.images_per_month == pytest.approx(2 * 3 * 3600 * HOURS_PER_MONTH)
    assert need.encoded_image_kb == pytest.approx(320 * 320 * 3 / 10 / 1000)
    assert Requirements(image_kb=50).encoded_image_kb == 50


# -- the estimator ------------------------------------------------------------------------------------------------


def _rows(efficiency=0.25, overhead=1.5, sizes=(320, 480, 640), variant=1, runtime="openvino", precision="fp32"):
    peak = 400.0
    rows = []
    for i, imgsz in enumerate(sizes):
        gflops = 6.5 * (imgsz / 640) ** 2
        p50 = overhead + 1000 * gflops / (peak * efficiency)
        rows.append(Observation(100 * variant + i, variant, runtime, precision, imgsz, gflops, peak, p50, 1.2 * p50))
    return rows


def test_fit_recovers_the_efficiency_overhead_and_tail_it_was_made_with():
    found = fit(_rows(), "openvino", "fp32")
    assert found.efficiency == pytest.approx(0.25, rel=1e-6)
    assert found.overhead_ms == pytest.approx(1.5, rel=1e-6)
    assert found.tail == pytest.approx(1.2)
    assert found.rows == 3 and "3 rows" in found.basis
    assert fit(_rows(), "onnxruntime", "fp32") is None  # nothing measured for that runtime


def test_one_size_keeps_the_prior_overhead_and_still_fits_the_efficiency():
    found = fit(_rows(sizes=(640,)), "openvino", "fp32")
    assert found.overhead_ms == pytest.approx(0.5)  # the CPU prior
    measured = _rows(sizes=(640,))[0]
    assert found.p50_ms(measured.gflops, measured.peak_gops) == pytest.approx(measured.p50_ms)


def test_cross_check_leaves_the_row_out_and_reports_its_error():
    rows = _rows(variant=1) + _rows(variant=2, efficiency=0.2)
    by_size = cross_check(rows, leave_out="size")
    by_variant = cross_check(rows, leave_out="variant")
    assert len(by_size) == len(by_variant) == 6
    # variant 1 estimated from the slower variant 2 (efficiency 0.2, not 0.25): estimated too slow
    assert all(c["error_pct"] > 0 for c in by_variant if c["variant_id"] == 1)
    assert median_abs_error_pct(by_variant) > median_abs_error_pct(by_size) > 0
    assert median_abs_error_pct([]) is None


def test_an_unmeasured_runtime_falls_back_to_the_prior_and_says_so():
    rows = _rows(runtime="openvino") + _rows(variant=2, runtime="litert", sizes=(320,))
    litert = next(c for c in cross_check(rows) if c["runtime"] == "litert")
    assert litert["basis"] == "prior"


@pytest.mark.parametrize(
    "used, expected", [("int8+bf16", "int8"), ("f32", "fp32"), ("bf16", "bf16"), ("w8a32", "fp32"), (None, "fp32")]
)
def test_precision_classes(used, expected):
    assert precision_class(used) == expected


def test_cpu_peak_factors_follow_the_isa_flags():
    assert cpu_peak_factor("int8", ["avx512_vnni"]) == 4 and cpu_peak_factor("int8", ["avx2"]) == 2
    assert cpu_peak_factor("bf16", ["amx_bf16"]) == 2 and cpu_peak_factor("bf16", ["avx2"]) == 1
    assert cpu_peak_factor("fp32", ["amx_int8"]) == 1


# -- the ranking rules: each requirement changes the ranking --------------------------------------------------------


def test_with_nothing_in_the_way_the_cheapest_feasible_target_wins():
    advice, best = _best(Requirements(latency_p99_ms=200, monthly_budget_usd=10_000))
    assert best == "edge-box"  # one site: a 250 USD box beats 146 USD a month of cloud
    assert [o.feasible for o in advice.options] == [True, True, True]
    monthly = [o.monthly_usd for o in advice.options]
    assert monthly == sorted(monthly)


# 50 sites of one image a second at the peak: a shared cloud pool is cheapest
POOLED = Requirements(
    latency_p99_ms=500, fleet_size=50, mean_images_per_s=0.5, peak_images_per_s=1, monthly_budget_usd=1e6
)


def test_privacy_excludes_the_cloud():
    need = POOLED
    advice, best = _best(need)
    assert best == "cloud-cpu"
    private, best_private = _best(replace(need, images_may_leave_site=False))
    assert best_private != "cloud-cpu"
    assert _option(private, "cloud-cpu").blockers == ("privacy",)
    assert "images may not leave the site" in _option(private, "cloud-cpu").reasons[0]


def test_connectivity_excludes_the_cloud():
    assert _best(POOLED)[1] == "cloud-cpu"
    for connectivity in ("intermittent", "offline"):
        advice, best = _best(replace(POOLED, connectivity=connectivity))
        assert best != "cloud-cpu"
        assert "connectivity" in _option(advice, "cloud-cpu").blockers


def test_the_budget_excludes_what_costs_more():
    fastest = Requirements(latency_p99_ms=500, rank_by="latency", images_may_leave_site=False)
    advice, best = _best(fastest)
    assert best == "server"  # the fastest, on the site's own network
    capped, best_capped = _best(replace(fastest, monthly_budget_usd=_option(advice, "server").monthly_usd - 1))
    assert best_capped == "edge-box"
    assert _option(capped, "server").blockers == ("budget",)
    assert [o.target.id for o in capped.options] == ["edge-box", "server", "cloud-cpu"]
    cheapest = replace(POOLED, monthly_budget_usd=_option(advice, "cloud-cpu").monthly_usd / 2)
    assert _best(cheapest)[1] is None  # by cost, the budget below the cheapest leaves nothing


def test_memory_excludes_a_device_the_model_does_not_fit():
    need = Requirements(latency_p99_ms=500, monthly_budget_usd=10_000)
    small = replace(EDGE, memory=_figure(0.02, "GB"))  # 20 MB: the runtime alone takes more
    advice, best = _best(need, [CLOUD, small, ON_PREM])
    assert best != "edge-box"
    assert _option(advice, "edge-box").blockers == ("memory",)


def test_the_latency_budget_excludes_slow_targets_and_counts_the_network():
    need = Requirements(monthly_budget_usd=10_000, network_rtt_ms=40, uplink_mbps=20)
    advice = advise([MODEL], need, TARGETS)
    cloud, edge = _option(advice, "cloud-cpu"), _option(advice, "edge-box")
    assert cloud.network_ms == pytest.approx(1.5 * 40 + need.encoded_image_kb * 8 / 20)
    assert edge.network_ms == 0
    tight = replace(need, latency_p99_ms=cloud.compute_p99_ms + 1)  # the compute fits, the round trip does not
    assert "latency" in _option(advise([MODEL], tight, TARGETS), "cloud-cpu").blockers


def test_the_power_envelope_excludes_hungry_devices():
    need = Requirements(latency_p99_ms=500, monthly_budget_usd=10_000)
    advice, _ = _best(replace(need, power_envelope_w=50))
    assert _option(advice, "server").blockers == ("power",)
    assert _option(advice, "edge-box").feasible and _option(advice, "cloud-cpu").feasible  # cloud: no site power


def test_costs_follow_devices_price_and_power():
    need = Requirements(latency_p99_ms=500, peak_images_per_s=30, mean_images_per_s=10, fleet_size=4)
    advice = advise([MODEL], need, TARGETS)
    cloud, edge = _option(advice, "cloud-cpu"), _option(advice, "edge-box")
    per_instance = 1000 / cloud.compute_p50_ms
    assert cloud.devices == math.ceil(30 * 4 / per_instance)
    assert cloud.monthly_usd == pytest.approx(cloud.devices * 0.2 * HOURS_PER_MONTH)
    assert edge.devices % 4 == 0  # the same number of boxes at every site
    power = 10 / 1000 * HOURS_PER_MONTH * need.electricity_usd_per_kwh
    assert edge.monthly_usd == pytest.approx(edge.devices * (250 / 36 + power))
    assert cloud.per_million_usd(need) == pytest.approx(cloud.monthly_usd / (need.images_per_month / 1e6))


def test_the_fastest_precision_the_target_runs_is_chosen():
    advice = advise([MODEL], Requirements(latency_p99_ms=500), TARGETS)
    assert _option(advice, "edge-box").precision == "int8"  # its int8 peak is 16x its fp32
    assert _option(advice, "server").precision == "fp32"
    assert any("calibration" in n for n in _option(advice, "edge-box").notes)


def test_the_more_accurate_model_wins_a_target_it_fits():
    student = replace(MODEL, name="student", gflops=2.0, params=1_000_000, map50_95=0.55)
    base = replace(MODEL, map50_95=0.60)
    advice = advise([student, base], Requirements(latency_p99_ms=500, monthly_budget_usd=10_000), TARGETS)
    assert {o.profile.name for o in advice.options} == {"yolo11n"}
    assert len(advice.considered) == 6


def test_the_summary_names_the_winner_and_its_trade_offs_or_says_nothing_fits():
    advice, best = _best(Requirements(latency_p99_ms=200, monthly_budget_usd=10_000))
    assert best in advice.summary() or _option(advice, best).target.name in advice.summary()
    assert TRADE_OFFS["edge"] in advice.summary()
    nothing = advise([MODEL], Requirements(latency_p99_ms=0.01), TARGETS)
    assert nothing.best is None and "latency budget" in nothing.summary()
    rows = nothing.rows()
    assert [r["rank"] for r in rows] == [1, 2, 3] and not any(r["feasible"] for r in rows)


# -- on this machine: estimates stored beside measurements, the advisor on a measured workspace ---------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from workbench.core.measure.plan import MeasurePlan
    from workbench.core.models.cards import demo_weights
    from workbench.core.services.measuring import measure  # each latency row with the estimate made before it
    from workbench.core.store.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("advise"))
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
    quick = {"seconds": 0.1, "warmup_s": 0, "warmup_runs": 1, "min_runs": 3, "threads": 1, "accuracy": False}
    for imgsz in (64, 128, 192):
        measure(ws, base, MeasurePlan(imgsz=(imgsz,), **quick))
    return ws, base


def test_the_public_measure_and_run_recipe_hand_the_advisors_estimate_down(monkeypatch):
    import workbench as wb
    from workbench.core.advise.estimate import estimate_for_row
    from workbench.core.measure import measure as measuring
    from workbench.core.optimize import recipes

    seen = {}
    monkeypatch.setattr(measuring, "measure", lambda *args, **kwargs: seen.setdefault("measure", (args, kwargs)))
    monkeypatch.setattr(recipes, "run_recipe", lambda *args, **kwargs: seen.setdefault("recipe", (args, kwargs)))
    wb.measure("ws", 3, data_yaml="data.yaml")
    wb.run_recipe("ws", "recipe", 3, "data.yaml", measure_input=False)
    (args, kwargs), (recipe_args, recipe_kwargs) = seen["measure"], seen["recipe"]
    assert args[:2] == ("ws", 3) and args[3] == "data.yaml" and kwargs["estimate"] is estimate_for_row
    assert recipe_args == ("ws", "recipe", 3, "data.yaml") and recipe_kwargs["estimate"] is estimate_for_row
    assert recipe_kwargs["measure_input"] is False


def test_every_latency_row_stores_the_estimate_made_before_it(measured):
    ws, _ = measured
    rows = ws.ledger.measurements(kind="latency")
    estimates = [m.metrics["estimate"] for m in rows]
    assert [e["basis"] for e in estimates][0] == "prior"  # nothing measured before the first row
    # a row whose windows disagreed (a busy machine) teaches nothing: learned once a stable row came before
    stable_before = [sum(m.metrics.get("stable") is not False for m in rows[:i]) for i in range(len(rows))]
    assert [e["basis"].startswith("learned from") for e in estimates] == [n > 0 for n in stable_before]
    for m, e in zip(rows, estimates, strict=True):
        assert e["p50_ms"] > 0 and e["p99_ms"] >= e["p50_ms"]
        assert e["error_pct"] == pytest.approx(100 * (e["p50_ms"] - m.metrics["p50_ms"]) / m.metrics["p50_ms"])


def test_the_estimator_summary_checks_every_row_of_this_machine(measured):
    from workbench.core.bench.estimator import estimator_markdown, estimator_summary

    ws, _ = measured
    summary = estimator_summary(ws)
    stable = sum(m.metrics.get("stable") is not False for m in ws.ledger.measurements(kind="latency"))
    assert summary["rows"] == stable and len(summary["checks"]) == stable  # a busy machine's rows are left out
    if stable:
        assert summary["median_abs_error_pct"] >= 0
        assert summary["learned"][0]["runtime"] == "pytorch" and summary["learned"][0]["rows"] == stable
    else:
        assert summary["learned"] == [] and summary["median_abs_error_pct"] is None
    assert "Median absolute error" in estimator_markdown(summary)


def test_the_advisor_ranks_the_catalog_for_a_measured_workspace(measured):
    from workbench.core.advise.advisor import advise_workspace

    ws, base = measured
    advice = advise_workspace(ws, Requirements(imgsz=128, latency_p99_ms=1000, monthly_budget_usd=1e5))
    here = next(o for o in advice.options if o.target.id == "this-machine")
    assert here.profile.variant_id == base and here.profile.gflops > 0
    stable = any(m.metrics.get("stable") is not False for m in ws.ledger.measurements(kind="latency"))
    assert here.efficiency.basis.startswith("learned from") == stable or here.runtime != "pytorch"
    assert {o.target.environment for o in advice.options} == {"cloud", "edge", "on_prem"}
    assert advice.best is not None and advice.summary()


def test_a_recipe_aim_is_checked_against_what_was_measured(measured):
    from workbench.core.optimize.aim import Aim, best_meeting, standings
    from workbench.core.optimize.recipes import Recipe

    ws, base = measured
    (easy,) = standings(ws, [base], Aim(latency_p99_ms=10_000))
    assert easy["meets"] and easy["p99_ms"] > 0 and best_meeting([easy]) == easy
    (hard,) = standings(ws, [base], Aim(latency_p99_ms=0.001, min_map50_95=0.5))
    assert not hard["meets"] and "ms >" in hard["misses"] and "accuracy not measured" in hard["misses"]
    assert best_meeting([hard]) is None
    (other_size,) = standings(ws, [base], Aim(latency_p99_ms=10_000, imgsz=640))
    assert other_size["misses"] == "latency not measured at 640 px"
    recipe = Recipe.from_dict({"steps": ["prune"], "aim": {"latency_p99_ms": 20, "min_map50_95": 0.5}})
    assert recipe.aim == Aim(20, 0.5) and Recipe.from_dict(recipe.to_dict()) == recipe
    for bad, named in [({"latency_p99_ms": -1}, "latency_p99_ms"), ({"min_map50_95": 50}, "fraction"), (3, "mapping")]:
        with pytest.raises(ConfigError, match=named):
            Recipe.from_dict({"steps": ["prune"], "aim": bad})


def test_an_efficiency_learned_here_carries_only_to_cpus_with_the_same_kind_of_unit(monkeypatch):
    from workbench.core.advise import advisor
    from workbench.core.advise.estimate import Efficiency

    here = {"fp32": 64.0, "int8": 2048.0}  # per core and GHz: an AMX machine
    monkeypatch.setattr(advisor, "cpu_peak_gops", lambda p, threads: (here[p], "test") if p in here else None)
    learned = {("onnxruntime", "int8"): Efficiency("onnxruntime", "int8", 0.03, 0.4, 1.1, 4, "learned from 4 rows")}
    amx = _target("amx", "cloud", fp32=400, int8=400 * 32)
    vnni = _target("vnni", "cloud", fp32=400, int8=400 * 4)
    carried = advisor._efficiency(amx, "onnxruntime", "int8", learned)
    assert carried.efficiency == 0.03 and "carried to this CPU" in carried.basis
    other = advisor._efficiency(vnni, "onnxruntime", "int8", learned)
    assert other.efficiency == prior("onnxruntime", "int8").efficiency and other.basis.startswith("prior")
    gpu = advisor._efficiency(replace(amx, device="gpu"), "onnxruntime", "int8", learned)
    assert gpu.basis == "prior"


def test_this_machine_is_one_machine():
    here = _target("this-machine", "on_prem", fp32=50, price=0, probed=True)
    need = Requirements(latency_p99_ms=1000, peak_images_per_s=100, mean_images_per_s=10)
    option = _option(advise([MODEL], need, [here]), "this-machine")
    assert option.devices > 1 and option.blockers == ("throughput",)
    assert option.monthly_usd == 0


def test_rows_a_target_worker_timed_become_that_target_s_own_estimate(tmp_path):
    from workbench.core.advise.advisor import learned_here
    from workbench.core.advise.estimate import observations
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"not a model, the ledger only")
    variant = workspace.add_artifact(weights, "m.pt", step="source", format="pytorch")
    for imgsz, gflops, p50 in ((320, 1.6, 0.9), (640, 6.5, 2.1)):  # as `workbench worker --target edge-box` records
        metrics = {"p50_ms": p50, "p99_ms": p50 * 1.2, "gflops": gflops, "stable": True}
        context = {"runtime": "openvino", "precision": "int8", "imgsz": imgsz, "threads": 4, "target": "edge-box"}
        workspace.ledger.add_measurement(variant, "latency", metrics, context)
    assert observations(workspace) == []  # the target's rows never teach this machine's fit
    learned = learned_here(workspace, TARGETS)
    own = learned[("edge-box", "openvino", "int8")]
    assert own.rows == 2 and own.basis == "measured on the target: 2 rows on edge-box"
    assert own.p50_ms(6.5, EDGE.peak_gops("int8")) == pytest.approx(2.1, rel=0.05)
    advice = advise([MODEL], Requirements(imgsz=640), TARGETS, learned)
    edge = _option(advice, "edge-box")  # openvino is not in its catalog runtimes: its worker ran it (fastest)
    assert edge.runtime == "openvino" and edge.efficiency is own
    assert edge.compute_p50_ms == pytest.approx(own.p50_ms(MODEL.gflops, EDGE.peak_gops("int8")))
    assert _option(advice, "cloud-cpu").efficiency.basis == "prior"
