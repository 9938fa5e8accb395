"""A diagnosis ranks its findings (causes first, the strongest first), says one sentence and lands in the ledger."""

from __future__ import annotations

import numpy as np

from workbench.core.doctor.findings import Diagnosis, Finding, Verdict


def _findings():
    return [
        Finding("data", Verdict.SUSPECT, "images are darker", "collect brighter images", "dark", strength=0.4),
        Finding("environment", Verdict.OK, "same libraries"),
        Finding(
            "preprocessing",
            Verdict.CAUSE,
            "channels are swapped",
            "feed RGB",
            "channels_swapped",
            evidence={"agreement": np.float32(0.12)},
            after={"agreement": 0.99},
            strength=0.9,
        ),  # fmt: skip
    ]


def test_causes_rank_first_and_the_sentence_names_cause_fix_and_after():
    diagnosis = Diagnosis.of("accuracy", _findings(), subject="model.onnx")
    assert [f.check for f in diagnosis.findings] == ["preprocessing", "data", "environment"]
    assert diagnosis.most_likely.cause == "channels_swapped" and not diagnosis.ok
    assert diagnosis.sentence() == (
        "Most likely cause: channels are swapped. Fix: feed RGB. After the fix: agreement 0.990."
    )


def test_all_ok_says_so():
    diagnosis = Diagnosis.of("speed", [Finding("warm-up", Verdict.OK, "warm"), Finding("threads", Verdict.OK, "2")])
    assert diagnosis.ok and diagnosis.most_likely is None
    assert diagnosis.sentence() == "No speed problem found: every check passed (warm-up, threads)."


def test_a_diagnosis_is_a_ledger_record_with_its_evidence(tmp_path):
    from workbench.core.store.workspace import Workspace

    ws = Workspace(tmp_path)
    variant = ws.ledger.add_variant("m", step="source")
    diagnosis = Diagnosis.of("accuracy", _findings(), subject="model.onnx", context={"images": 4})
    stored = ws.ledger.measurement(diagnosis.record(ws, variant))
    assert stored.kind == "diagnosis" and stored.context["subject"] == "model.onnx"
    assert stored.metrics["cause"] == "channels_swapped" and stored.metrics["ok"] is False
    assert stored.metrics["findings"][0]["evidence"]["agreement"] == np.float32(0.12).item()
    assert stored.metrics["findings"][0]["verdict"] == "cause"
