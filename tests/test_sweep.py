"""Sweeps: the search space and its checks, grid / random / Optuna sampling, constraints, early stopping, the
Pareto front and its figure, a real grid in process, and `workbench sweep`."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.core.errors import ConfigError
from workbench.core.services.recipe_sweeps import SearchSpace
from workbench.core.sweep.pareto import pareto_front
from workbench.core.sweep.search import run_sweep
from workbench.core.sweep.trials import TRIAL_KIND, LocalEngine, TrialResult

FAST = {"seconds": 0.2, "warmup_s": 0.05, "min_runs": 3}
TRAIN = [{"prune": {"round_to": 16, "imgsz": 64}}, {"finetune": {"epochs": 3, "batch": 4, "imgsz": 64, "nbs": 4}}]


def space(**changes) -> SearchSpace:
    base = {
        "name": "fake",
        "steps": TRAIN,
        "search": {"prune.ratio": {"low": 0.1, "high": 0.6}, "finetune.epochs": [1, 2, 3]},
        "method": "random",
        "trials": 10,
        "measure": FAST,
    }
    return SearchSpace.from_dict({**base, **changes})


def fake_values(params: dict, stage: str) -> dict:
    """A made-up trade-off: pruning more is faster, smaller and less accurate; a short pass is worse."""
    ratio, epochs = params["prune.ratio"], params.get("finetune.epochs", 1)
    return {
        "map50_95": 0.6 - 0.5 * ratio + 0.02 * epochs - (0.1 if stage == "short" else 0.0),
        "p50_ms": 10 - 8 * ratio,
        "p99_ms": 12 - 8 * ratio,
        "size_mb": 5 - 4 * ratio,
    }


class FakeEngine:
    """Returns values computed from the params, runs nothing; `fail` trial numbers come back with an error."""

    def __init__(self, parallelism: int = 1, fail=()):
        self.parallelism, self.fail, self.seen = parallelism, set(fail), []

    def run(self, workspace, model_id, data_yaml, trials, *, progress=None):
        for spec in trials:
            self.seen.append(spec)
            if spec.number in self.fail:
                yield TrialResult(spec.number, spec.stage, None, (), {}, "fake", error="worker lost")
            else:
                yield TrialResult(spec.number, spec.stage, None, (), fake_values(spec.params, spec.stage), "fake")


def sampled(sweep: SearchSpace, engine=None) -> list[dict]:
    engine = engine or FakeEngine()
    run_sweep(None, 0, None, sweep, engine=engine, check=False)
    return [s.params for s in engine.seen]


# ---------------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("method", ["random", "optuna"])
def test_sampled_points_are_valid_distinct_and_seeded(method):
    points = sampled(space(method=method, trials=12, seed=1))
    assert len(points) == 12
    assert all(0.1 <= p["prune.ratio"] <= 0.6 and p["finetune.epochs"] in (1, 2, 3) for p in points)
    assert len({tuple(sorted(p.items())) for p in points}) == 12
    assert sampled(space(method=method, trials=12, seed=1)) == points
    assert sampled(space(method=method, trials=12, seed=2)) != points


def test_grid_is_the_product_in_order_and_every_trial_gets_its_options():
    sweep = space(method="grid", trials=6, search={"prune.ratio": [0.2, 0.4], "finetune.epochs": [1, 2, 3]})
    engine = FakeEngine()
    sampled(sweep, engine)
    assert [tuple(s.params.values()) for s in engine.seen] == [(r, e) for r in (0.2, 0.4) for e in (1, 2, 3)]
    for spec in engine.seen:
        prune, finetune = (next(iter(step.values())) for step in spec.recipe["steps"])
        assert (prune["ratio"], finetune["epochs"]) == (spec.params["prune.ratio"], spec.params["finetune.epochs"])
        assert spec.accuracy["latency"] is False and spec.latency["accuracy"] is False


def test_random_never_repeats_a_point_of_a_small_space():
    points = sampled(space(search={"prune.ratio": [0.2, 0.4], "finetune.epochs": [1]}, trials=5))
    assert sorted(p["prune.ratio"] for p in points) == [0.2, 0.4]


def test_measure_dimensions_reach_the_plans_and_static_exports():
    sweep = space(
        steps=[{"prune": {"imgsz": 64}}, {"export": {"format": "onnx"}}],
        search={"prune.ratio": [0.3], "measure.imgsz": [64, 96], "measure.threads": [1]},
        method="grid",
        trials=2,
    )
    specs = [sweep.spec(n, p) for n, p in enumerate(sweep.grid_points())]
    assert [s.accuracy["imgsz"] for s in specs] == [[64], [96]] == [s.latency["imgsz"] for s in specs]
    assert [s.recipe["steps"][1]["export"]["imgsz"] for s in specs] == [64, 96]
    assert all(s.latency["threads"] == 1 and s.latency["seconds"] == FAST["seconds"] for s in specs)


# ---------------------------------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("method", ["grid", "random", "optuna"])
def test_constraints_mark_infeasible_points_and_best_meets_them(method):
    search = {"prune.ratio": {"low": 0.1, "high": 0.6, "step": 0.1}, "finetune.epochs": [1]}
    sweep = space(method=method, search=search, trials=6, constraints={"p99_ms": {"max": 9.0}})
    result = run_sweep(None, 0, None, sweep, engine=FakeEngine(), check=False)
    assert len(result.rows) == 6
    for row in result.rows:
        assert row["feasible"] == (row["p99_ms"] <= 9.0)
    feasible = [r for r in result.rows if r["feasible"]]
    assert feasible and result.best in feasible
    assert result.best["map50_95"] == max(r["map50_95"] for r in feasible)
    assert all(r["feasible"] for r in result.pareto)


def test_no_feasible_point_says_why():
    sweep = space(method="grid", search={"prune.ratio": [0.2, 0.3]}, trials=2, constraints={"size_mb": {"max": 1}})
    result = run_sweep(None, 0, None, sweep, engine=FakeEngine(), check=False)
    assert result.best is None and "size_mb" in result.why_no_best and not result.pareto


def test_failed_trials_are_kept_and_the_sweep_goes_on():
    sweep = space(method="grid", search={"prune.ratio": [0.2, 0.3, 0.4]}, trials=3)
    result = run_sweep(None, 0, None, sweep, engine=FakeEngine(fail={1}), check=False)
    assert [r.number for r in result.results] == [0, 1, 2]
    assert [r.number for r in result.failed] == [1] and result.failed[0].error == "worker lost"
    assert result.best["number"] in (0, 2) and not result.rows[1]["feasible"]


def test_optuna_failures_and_cancel_stop_cleanly():
    calls = []
    sweep = space(method="optuna", trials=8)
    engine = FakeEngine(fail={0, 3})
    stop, note = (lambda: len(calls) >= 4), (lambda spec, r: calls.append(r.number))
    result = run_sweep(None, 0, None, sweep, engine=engine, cancel=stop, on_result=note, check=False)
    assert result.cancelled and len(result.results) == 4 and len(result.failed) == 2


# ---------------------------------------------------------------------------------------------------- early stopping


@pytest.mark.parametrize("method", ["random", "optuna"])
def test_early_stopping_runs_fewer_full_trials(method):
    engine = FakeEngine(parallelism=2)
    sweep = space(method=method, trials=10, early_stop={"epochs": 1, "keep": 0.3})
    result = run_sweep(None, 0, None, sweep, engine=engine, check=False)
    short = [s for s in engine.seen if s.stage == "short"]
    full = [s for s in engine.seen if s.stage == "full"]
    assert len(short) == 10 and 1 <= len(full) < len(short)
    assert all(s.recipe["steps"][1]["finetune"]["epochs"] == 1 for s in short)
    assert all(s.recipe["steps"][1]["finetune"]["epochs"] == s.params["finetune.epochs"] for s in full)
    assert all(r["stage"] == "full" for r in result.pareto) and result.best["stage"] == "full"
    if method == "random":  # plain ranking: the best 30% of the short values go on
        best_short = sorted(short, key=lambda s: -fake_values(s.params, "short")["map50_95"])[:3]
        assert sorted(s.number for s in full) == sorted(s.number for s in best_short)


# ---------------------------------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"trails": 4}, "unknown keys \\['trails'\\]"),
        ({"search": {"quantize.preset": ["mixed"]}}, "quantize.preset: no 'quantize' step"),
        ({"search": {"prune.sparsity": [0.3]}}, "prune.sparsity: prune has no option 'sparsity'"),
        ({"search": {"prune.ratio": [0.3, 1.5]}}, "prune.ratio=1.5.*pruning ratio must be between 0 and 1"),
        ({"search": {"finetune.epochs": ["two"]}}, "finetune.epochs=two"),
        ({"search": {"prune.ratio": {"low": 0.5, "high": 0.1}}}, "search: prune.ratio: a range needs"),
        ({"search": {"prune.ratio": {"low": 0.1, "high": 0.5, "log": True, "step": 0.1}}}, "prune.ratio: log"),
        ({"search": {"measure.runtime": ["onnx"]}}, "measure.runtime"),
        ({"search": {"ratio": [0.3]}}, "'ratio' names no option"),
        ({"constraints": {"latency": {"max": 5}}}, "constraints: latency: unknown metric"),
        ({"constraints": {"p99_ms": {"max": 5, "target": "mars-rover"}}}, "target 'mars-rover' is not in the catalog"),
        ({"constraints": {"p99_ms": {"below": 5}}}, "constraints: p99_ms"),
        ({"objective": {"maximize": "fps"}}, "objective: unknown metric"),
        ({"method": "bayes"}, "method must be one of"),
        (
            {"method": "grid", "search": {"prune.ratio": [0.1, 0.2, 0.3], "finetune.epochs": [1, 2]}, "trials": 4},
            "the grid has 6 points, more than trials: 4",
        ),  # fmt: skip
        ({"method": "grid", "search": {"prune.ratio": {"low": 0.1, "high": 0.5}}}, "without step"),
        ({"steps": [{"prune": {}}], "early_stop": {"epochs": 1}, "search": {"prune.ratio": [0.3]}}, "early_stop"),
        ({"early_stop": {"epochs": 0}}, "early_stop: epochs"),
        ({"measure": {"secnds": 1}}, "unknown option 'secnds'"),
        ({"measure": {"imgsz": [64, 96]}}, "measure: imgsz lists 2 values"),
        ({"trials": 0}, "trials must be"),
    ],
)
def test_bad_specs_name_the_key(changes, named):
    with pytest.raises(ConfigError, match=named):
        space(**changes)


def test_a_spec_reads_from_yaml_and_the_shipped_example_parses(tmp_path):
    from importlib import resources

    shipped = SearchSpace.from_yaml(resources.files("workbench") / "recipes" / "sweeps" / "small.yaml")
    assert shipped.grid_size == shipped.trials and shipped.early_stop == {"epochs": 1, "keep": 0.5}
    search = SearchSpace.from_yaml(resources.files("workbench") / "recipes" / "sweeps" / "search-student.yaml")
    assert search.grid_size == search.trials == 2 and search.constraints == {"map50_95": {"min": 0.837}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: [prune]\nsearch: {prune.ratio: [0.3]}\nobjective: {maximise: map50_95}\n")
    with pytest.raises(ConfigError, match="objective must be"):
        SearchSpace.from_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        SearchSpace.from_yaml(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------------------------- the front


def brute_front(rows, objectives):
    def better_or_equal(a, b, k):
        return a[k] >= b[k] if objectives[k] == "max" else a[k] <= b[k]

    def dominated_by(b, a):
        return all(better_or_equal(a, b, k) for k in objectives) and any(a[k] != b[k] for k in objectives)

    return [b for b in rows if not any(dominated_by(b, a) for a in rows)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), max_size=25),
    st.sampled_from(["max", "min"]),
    st.booleans(),
)
def test_pareto_front_matches_the_definition(points, direction, three):
    rows = [{"a": a, "b": float(b), "c": c, "i": i} for i, (a, b, c) in enumerate(points)]
    objectives = {"a": direction, "b": "min", **({"c": "max"} if three else {})}
    assert pareto_front(rows, objectives) == brute_front(rows, objectives)


def test_pareto_front_leaves_out_rows_without_values():
    rows = [{"a": 1.0, "b": 1.0}, {"a": math.nan, "b": 0.0}, {"b": 0.0}, {"a": 0.5, "b": 0.5}]
    assert pareto_front(rows, {"a": "max", "b": "min"}) == [rows[0], rows[3]]
    with pytest.raises(ValueError, match="max' or 'min"):
        pareto_front(rows, {"a": "up"})


def test_the_figure_highlights_the_front_and_greys_infeasible_points():
    from workbench.core.report.pareto import INFEASIBLE_COLOUR, sweep_figure

    sweep = space(method="grid", search={"prune.ratio": [0.1, 0.3, 0.5], "finetune.epochs": [1, 3]}, trials=6,
                  constraints={"size_mb": {"max": 4.0}})  # fmt: skip
    result = run_sweep(None, 0, None, sweep, engine=FakeEngine(fail={5}), check=False)
    figure = sweep_figure(result.rows)
    traces = {t.name.split(" (")[0]: t for t in figure.data}
    assert set(traces) == {"infeasible", "feasible", "Pareto front"}
    assert traces["infeasible"].marker.color == INFEASIBLE_COLOUR
    assert len(traces["infeasible"].x) == sum(1 for r in result.rows if not r["feasible"] and r["error"] is None)
    front = traces["Pareto front"]
    assert len(front.x) == len(result.pareto) and list(front.x) == sorted(front.x) and "lines" in front.mode
    assert "prune.ratio = " in front.text[0] and "variant None" in front.text[0]
    assert "1 trial(s) without values" in figure.layout.title.text


# ---------------------------------------------------------------------------------------------------- real trials


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from workbench.core.data.generate import ShapesConfig, generate_shapes
    from workbench.core.models.sources import open_source, record_source
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("sweep") / "ws")
    data = generate_shapes(workspace.datasets, ShapesConfig(seed=3, train=8, val=8, imgsz=64))
    return workspace, record_source(workspace, open_source("demo")), data.data_yaml


def test_a_grid_runs_in_process_and_lands_in_the_ledger_with_lineage(study):
    workspace, model_id, data_yaml = study
    sweep = SearchSpace.from_dict(
        {
            "name": "grid-e2e",
            "steps": [{"prune": {"round_to": 16, "imgsz": 64}}, {"export": {"format": "onnx"}}],
            "search": {"prune.ratio": [0.2, 0.4, 0.6], "measure.imgsz": [64, 96]},
            "constraints": {"size_mb": {"max": 7.0}},
            "method": "grid",
            "trials": 6,
            "measure": FAST,
        }
    )
    result = run_sweep(workspace, model_id, data_yaml, sweep, engine=LocalEngine())
    assert [r.number for r in result.results] == list(range(6)) and not result.failed, result.failed
    records = [m for m in workspace.ledger.measurements(kind=TRIAL_KIND) if m.context["sweep"] == "grid-e2e"]
    assert sorted(m.context["trial"] for m in records) == list(range(6))
    for trial, res in zip(result.trials, result.results, strict=True):
        chain = workspace.lineage(res.final_id)
        assert [v.step for v in chain][-1] == "source" and chain[-1].id == model_id
        pruned = next(v for v in chain if v.step == "prune")
        assert pruned.params["ratio"] == trial.params["prune.ratio"]
        assert workspace.variant(res.final_id).params["imgsz"] == trial.params["measure.imgsz"]
        record = next(m for m in records if m.variant_id == res.final_id)
        assert record.metrics["params"] == trial.params and record.context["sweep"] == "grid-e2e"
        assert set(res.values) == {"map50_95", "p50_ms", "p99_ms", "size_mb"}
    sizes = {r.number: r.values["size_mb"] for r in result.results}
    assert sizes[0] > sizes[2] > sizes[4]  # more pruning, a smaller file
    assert result.best is not None and result.best["feasible"] and result.pareto


def test_the_cli_runs_a_sweep_and_refuses_a_bad_spec_first(study, tmp_path, capsys):
    from workbench.cli import main

    _, _, data_yaml = study
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "name: cli\nsteps:\n  - export: {format: onnx}\nsearch:\n  measure.imgsz: [64, 96]\n"
        "objective: {minimize: p50_ms}\nmethod: grid\ntrials: 2\n"
        "measure: {seconds: 0.2, warmup_s: 0.05, min_runs: 3}\n"
    )
    out = tmp_path / "ws"
    assert main(["sweep", str(spec), "--workspace", str(out), "--data", str(data_yaml)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("trial ") >= 2 and "Pareto front" in printed and "best feasible: variant" in printed
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.read_text().replace("measure.imgsz", "export.speed"))
    fresh = tmp_path / "fresh"
    assert main(["sweep", str(bad), "--workspace", str(fresh), "--data", str(data_yaml)]) == 2
    assert "export.speed" in capsys.readouterr().err and not fresh.exists()
    assert main(["sweep", str(spec), "--workspace", str(fresh), "--workers", "2"]) == 2
    assert "--engine dask" in capsys.readouterr().err and not fresh.exists()


def test_the_cli_names_a_missing_dask_engine(monkeypatch):
    import argparse
    import sys

    from workbench.cli.sweep import make_engine

    monkeypatch.setitem(sys.modules, "workbench.core.sweep.dask_engine", None)  # import fails as if not there
    args = argparse.Namespace(engine="dask", scheduler=None, workers=2)
    with pytest.raises(ConfigError, match="Dask engine .* cannot be imported") as caught:
        make_engine(args)
    assert "--engine local" in caught.value.fix
    assert isinstance(make_engine(argparse.Namespace(engine="local", scheduler=None, workers=None)), LocalEngine)


def test_a_failing_local_trial_is_a_result_and_is_recorded_once(study, monkeypatch):
    from workbench.core.optimize import recipes
    from workbench.core.sweep.trials import record_trial

    workspace, model_id, data_yaml = study
    kept = recipes.StepResult(1, "prune", [model_id], 0.1)

    def broken(*args, **kwargs):
        raise recipes.PipelineError("step 2 (export) failed: disk full", "free some space", [kept])

    monkeypatch.setattr(recipes, "run_recipe", broken)
    sweep = space(name="broken", method="grid", search={"prune.ratio": [0.3]}, trials=1)
    spec = sweep.spec(0, {"prune.ratio": 0.3})
    (result,) = LocalEngine().run(workspace, model_id, data_yaml, [spec])
    assert result.error == "step 2 (export) failed: disk full" and result.values == {}
    assert result.final_id == model_id and result.variant_ids == (model_id,) and result.worker == "local"
    first = record_trial(workspace, spec, result)
    assert record_trial(workspace, spec, result, "broken") == first  # the same trial is not recorded twice
    record = workspace.ledger.measurement(first)
    assert record.kind == TRIAL_KIND and record.context["status"] == "failed" and record.context["sweep"] == "broken"
