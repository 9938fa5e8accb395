"""Like with like: every mAP shown side by side was measured on the same images (split, count, content hash).

Two variants are measured on the first 8 and on all 200 images of one generated split; the comparison table, the
chart, the report, the pipeline table, the advisor's standings, the sweep front and the Compare panel each show
one set, name it, say which variant was not measured on it, and never mix the two; the panel's button (through
`measure_on`) measures the missing variant there, after which it shows.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import workbench as wb
from workbench.core.data.generate import ShapesConfig, generate_shapes
from workbench.core.errors import ConfigError
from workbench.core.measure.measure import measure
from workbench.core.measure.plan import MeasurePlan
from workbench.core.models.cards import demo_weights
from workbench.core.models.export import ExportConfig, export
from workbench.core.optimize.aim import Aim, standings
from workbench.core.report.compare import comparison_table
from workbench.core.report.figures import pareto_figure
from workbench.core.report.sections import study_sections
from workbench.core.report.tables import pipeline_table
from workbench.core.services.session import Session
from workbench.core.store.evaluation_sets import NOT_MEASURED, UNKNOWN_NAME, key_of, workspace_sets
from workbench.core.store.records import Measurement
from workbench.core.store.workspace import Workspace
from workbench.core.sweep.recorded import recorded_sweeps

QUICK = {"seconds": 0.05, "warmup_s": 0, "warmup_runs": 1, "min_runs": 3, "imgsz": (64,)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Variant a measured on the first 8 and on all 200 images of a split, variant b on the 8 only; both are ONNX
    (about 13 ms an image here, against 120 ms for the PyTorch model): the whole module takes seconds."""
    data = generate_shapes(tmp_path_factory.mktemp("data"), ShapesConfig(seed=5, train=1, val=200, imgsz=64))
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
    a = export(ws, base, ExportConfig(format="onnx", imgsz=64))
    b = ws.add_artifact(ws.artifact_path(a), "b.onnx", step="export", parent_id=base, format="onnx", params={"b": 1})
    for variant, sizes in ((a, (8, None)), (b, (8,))):
        measure(ws, variant, MeasurePlan(**QUICK, accuracy=False), data.data_yaml)
        for images in sizes:
            measure(ws, variant, MeasurePlan(**QUICK, latency=False, accuracy_images=images), data.data_yaml)
    sets = {s.images: s for s in workspace_sets(ws)}
    return SimpleNamespace(ws=ws, a=a, b=b, data=data, small=sets[8], large=sets[200])


def _copy(data, folder):
    """The dataset copied to `folder`, its data YAML pointing at the copy."""
    shutil.copytree(data.root, folder)
    yaml = folder / "data.yaml"
    yaml.write_text(yaml.read_text().replace(str(data.root), str(folder)))
    return yaml


def _map(ws, variant_id, chosen) -> float:
    """The variant's newest mAP50-95 on the set, straight from the ledger."""
    rows = [m for m in ws.ledger.measurements(variant_id=variant_id, kind="accuracy") if key_of(m) == chosen.key]
    return rows[-1].metrics["map50_95"]


def test_each_accuracy_row_records_what_it_was_measured_on(study):
    rows = study.ws.ledger.measurements(kind="accuracy")
    identities = [m.context["evaluation_set"] for m in rows]
    assert [(i["split"], i["images"], i["imgsz"]) for i in identities] == [
        ("val", 8, 64),
        ("val", 200, 64),
        ("val", 8, 64),
    ]
    assert identities[0]["digest"] == identities[2]["digest"] != identities[1]["digest"]
    assert study.large.name == f"val · 200 images · 64 px · {identities[1]['digest'][:6]}"
    assert study.small.variant_ids == {study.a, study.b} and study.large.variant_ids == {study.a}


def test_the_table_and_chart_show_one_set_and_name_the_variant_not_measured_on_it(study):
    ws, a, b = study.ws, study.a, study.b
    default = comparison_table(ws).set_index("variant_id")  # the set with the most variants: the 8 images
    assert (default["evaluation_set"] == study.small.name).all()
    assert default.loc[a, "map50_95"] == _map(ws, a, study.small) and default.loc[b, "map50_95"] == _map(
        ws, b, study.small
    )
    large = comparison_table(ws, evaluation_set=study.large.name).set_index("variant_id")
    assert (large["evaluation_set"] == study.large.name).all()
    assert large.loc[a, "map50_95"] == _map(ws, a, study.large) != _map(ws, a, study.small)  # never the 8's value
    assert np.isnan(large.loc[b, "map50_95"]) and large.loc[b, "map_note"] == NOT_MEASURED
    assert np.isnan(large.loc[b, "map50_95_delta"])  # no delta against a mAP from other images
    title = pareto_figure(large.reset_index()).layout.title.text
    assert study.large.name in title and f"{NOT_MEASURED}: b-" in title
    drawn = [y for t in pareto_figure(large.reset_index()).data if t.customdata is not None for y in t.y]
    assert drawn == [_map(ws, a, study.large)]


def test_report_pipeline_table_and_standings_keep_to_one_set(study):
    ws, a, b = study.ws, study.a, study.b
    note = study_sections(ws, evaluation_set=study.large.key)[0].note
    assert f"measured on {study.large.name}; {NOT_MEASURED}: b-" in note and study.small.name in note
    run = SimpleNamespace(input_id=a, steps=[SimpleNamespace(index=1, kind="finetune", variants=[b])])
    rows = {r["variant_id"]: r for r in pipeline_table(ws, run, study.large.key)}
    assert rows[a]["map50_95"] == _map(ws, a, study.large) and rows[a]["map_set"] == study.large.name
    assert rows[b]["map50_95"] is None and rows[b]["map_set"] == NOT_MEASURED
    ranked = {r["variant_id"]: r for r in standings(ws, [a, b], Aim(min_map50_95=0.01), study.large.key)}
    assert ranked[b]["misses"] == f"accuracy not measured on {study.large.name}" and not ranked[b]["meets"]
    assert ranked[a]["map50_95"] == _map(ws, a, study.large)


def test_a_set_the_ledger_does_not_hold_is_named_with_the_ones_it_does(study):
    with pytest.raises(ConfigError) as caught:
        comparison_table(study.ws, evaluation_set="val · 9 images")
    assert study.small.name in caught.value.problem and study.large.name in caught.value.problem


def test_measure_on_refuses_files_that_changed(study, tmp_path):
    yaml = _copy(study.data, tmp_path / "copy")
    label = sorted((tmp_path / "copy" / "labels" / "val").glob("*.txt"))[0]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ConfigError) as caught:
        wb.measure_on(study.ws, study.b, study.large.key, data_yaml=yaml)
    assert "not val · 200 images" in caught.value.problem and "restore" in caught.value.fix


def test_the_compare_panel_picks_a_set_and_its_button_measures_the_missing_there(study):
    from workbench.widgets import Dashboard

    ws, a, b = study.ws, study.a, study.b
    session = Session(ws, model_id=a, data_yaml=study.data.data_yaml, imgsz=64)
    dashboard = Dashboard(session, background=False)
    assert dashboard.sets.value == study.small.key and not dashboard.sets.missing
    dashboard.sets.pick.value = study.large.key
    assert dashboard.sets.missing == [b] and NOT_MEASURED in dashboard.sets.status.value
    assert study.large.name in dashboard.figure.layout.title.text
    dashboard.sets.measure_button.click()  # measure_on, on the 200 images
    after = dashboard.table.set_index("variant_id")
    assert after.loc[b, "map50_95"] == _map(ws, b, study.large) and not dashboard.sets.missing
    assert "measured 1 variant" in dashboard.sets.status.value
    assert workspace_sets(ws)[0].key == study.large.key  # both sets hold both now: the one with more images leads


def test_rows_recorded_before_sets_show_as_set_unknown_and_never_lead(study):
    ws = Workspace(study.ws.root.parent / "old")
    old = ws.ledger.add_variant("old.pt", step="source", format="pytorch")
    ws.ledger.add_measurement(old, "accuracy", {"map50": 0.9, "map50_95": 0.7}, {"imgsz": 64, "status": "ok"})
    assert [s.name for s in workspace_sets(ws)] == [UNKNOWN_NAME]


def test_a_sweep_front_is_drawn_over_one_set(study):
    identity = {s.images: {"key": s.key, "digest": s.digest, "split": "val", "images": s.images, "imgsz": 64}
                for s in (study.small, study.large)}  # fmt: skip
    rows = [(1, 0.5, 10.0, 200), (2, 0.6, 12.0, 200), (3, 0.9, 5.0, 8)]  # trial 3 would dominate: other images
    records = [
        Measurement(n, 1, "sweep_trial", {"map50_95": m, "p50_ms": p}, {"trial": n, "evaluation_set": identity[i]})
        for n, m, p, i in rows
    ]
    sweep = recorded_sweeps(records)["(unnamed)"]
    assert sweep.evaluation_set == study.large.name and sweep.other_set == 1
    assert [r["number"] for r in sweep.front] == [1, 2] and [r["number"] for r in sweep.drawn] == [1, 2]


def test_the_identity_ignores_order_and_names_and_follows_content(study, tmp_path):
    data = study.data
    assert wb.evaluation_set(data.data_yaml).key == study.large.key
    renamed = tmp_path / "renamed"
    yaml = _copy(data, renamed)
    stems = sorted(p.stem for p in (renamed / "images" / "val").iterdir())
    for folder in ("images", "labels"):
        for path in list((renamed / folder / "val").iterdir()):  # the same files, named in the reverse order
            path.rename(path.with_name(f"r{len(stems) - stems.index(path.stem):04d}{path.suffix}"))
    assert wb.evaluation_set(yaml).key == study.large.key
    assert wb.evaluation_set(yaml, images=8).key != study.small.key  # another first eight
