"""The controlled test: mAP of the deployment and of the reference on a labelled control set, per class, with the
detection-level differences (matched, missing, extra, class flips, score shift); without labels the reference's
detections on the production images serve as pseudo-labels. And the evidence pictures: reference and deployment
boxes side by side on the same image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.labels import LabelledImage
from ...models.detector import Detections
from ..findings import Finding, Verdict
from .run import AGREE, Run, differences, read_images, run_on

MAP_DROP = 0.02  # mAP50-95 the deployment may lose against the reference before it counts (one class in 40)
CONTROL_IMAGES = 16


def _rows(answers) -> list[np.ndarray]:
    return [a.rows() if isinstance(a, Detections) else np.zeros((0, 6), np.float32) for a in answers]


def controlled_test(subject, reference_detector, labelled, ref_dets, run: Run, production_paths) -> Finding:
    """mAP on the labelled control set (its val split), else agreement with the reference's pseudo-labels."""
    if labelled is None:
        return _pseudo_labelled(ref_dets, run, production_paths)
    from ...data.checks import check_dataset, list_images
    from ...measure.mean_ap import read_labelled, score

    names = check_dataset(labelled, splits=("val",)).names
    images, paths, unreadable = read_images(list_images(labelled, "val")[:CONTROL_IMAGES])
    truths = read_labelled(paths)
    ref_run = Run([reference_detector(image) for image in images])
    dep_run = run_on(subject, images)
    ref_score = score(_rows(ref_run.answers), truths, names)
    dep_score = score(_rows(dep_run.answers), truths, names)
    truth_dets = [
        Detections(t.boxes.astype(np.float32), np.ones(len(t.classes), np.float32), t.classes) for t in truths
    ]
    evidence = {
        "images": len(images),
        "labels": "ground truth of " + str(labelled),
        "reference": _headline(ref_score),
        "deployment": _headline(dep_score),
        "per_class": _per_class(ref_score, dep_score),
        "deployment_vs_labels": _counts(differences(truth_dets, dep_run)),
        "reference_vs_labels": _counts(differences(truth_dets, ref_run)),
        "failed_calls": len(dep_run.failures),
    }
    drop = ref_score["map50_95"] - dep_score["map50_95"]
    evidence["map50_95_drop"] = round(drop, 4)
    if drop <= MAP_DROP and not dep_run.failures:
        return Finding(
            "controlled test",
            Verdict.OK,
            f"mAP50-95 on the control set is the reference's "
            f"({dep_score['map50_95']:.3f} vs {ref_score['map50_95']:.3f})",
            evidence=evidence,
        )
    return Finding(
        "controlled test",
        Verdict.SUSPECT,
        f"mAP50-95 on the control set drops from {ref_score['map50_95']:.3f} to {dep_score['map50_95']:.3f}",
        "see the other findings for why",
        "accuracy_drop",
        evidence,
        strength=0.2,
    )


def _headline(result: dict) -> dict:
    return {k: round(result[k], 4) for k in ("map50_95", "map50", "precision", "recall")}


def _per_class(ref_score: dict, dep_score: dict) -> list[dict]:
    deployed = {row["class"]: row for row in dep_score["per_class"]}
    return [
        {
            "class": row["class"],
            "reference_map50_95": round(row["map50_95"], 4),
            "deployment_map50_95": round(deployed.get(row["class"], {}).get("map50_95", 0.0), 4),
        }
        for row in ref_score["per_class"]
    ]


def _counts(found: dict) -> dict:
    keys = ("reference", "deployment", "matched", "missing", "extra", "class_flips", "score_shift", "agreement")
    counts = {k: found[k] for k in keys}
    counts["labels"] = counts.pop("reference")
    return counts


def _pseudo_labelled(ref_dets, run: Run, paths) -> Finding:
    """Without labels: the deployment scored against the reference's detections as pseudo-labels."""
    from ...measure.mean_ap import score

    truths = [LabelledImage(Path(p), d.boxes, d.classes) for p, d in zip(paths, ref_dets, strict=True)]
    pseudo = score(_rows(run.answers), truths)
    found = differences(ref_dets, run)
    evidence = {
        "labels": "none given: the reference's detections serve as pseudo-labels",
        "images": len(paths),
        "map50_95_vs_reference": round(pseudo["map50_95"], 4),
        **_counts(found),
    }
    if found["agreement"] >= AGREE and not run.failures:
        return Finding(
            "controlled test",
            Verdict.OK,
            "the deployment finds what the reference finds (pseudo-labels: "
            "the reference's detections; no labelled set given)",
            evidence=evidence,
        )
    return Finding(
        "controlled test",
        Verdict.SUSPECT,
        f"against the reference's detections as pseudo-labels the "
        f"deployment agrees {found['agreement']:.2f} (matched {found['matched']}, missing "
        f"{found['missing']}, extra {found['extra']}, class flips {found['class_flips']})",
        "see the other findings for why; pass labelled= for mAP on ground truth",
        "accuracy_drop",
        evidence,
        strength=0.2,
    )


def write_pictures(out_dir, images, paths, ref_dets, run: Run, count: int = 4) -> tuple[str, ...]:
    """Side-by-side JPEGs (reference left, deployment right) of the images where they disagree most."""
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = sorted(range(len(images)), key=lambda i: differences([ref_dets[i]], Run([run.answers[i]]))["agreement"])
    written = []
    for index in scored[:count]:
        left = _draw(images[index], ref_dets[index], "reference")
        answer = run.answers[index]
        right = _draw(images[index], answer if isinstance(answer, Detections) else None, "deployment")
        path = out / f"doctor-{Path(paths[index]).stem}.jpg"
        cv2.imwrite(str(path), np.concatenate([left, right], axis=1))
        written.append(str(path))
    return tuple(written)


def _draw(image: np.ndarray, detections: Detections | None, label: str) -> np.ndarray:
    import cv2

    canvas = image.copy()
    colours = [(0, 200, 0), (0, 120, 255), (255, 80, 0), (200, 0, 200), (0, 200, 200)]
    if detections is None:
        cv2.putText(canvas, "call failed", (4, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
    else:
        for box, score, cls in zip(detections.boxes, detections.scores, detections.classes, strict=True):
            x0, y0, x1, y1 = (int(round(float(v))) for v in box)
            colour = colours[int(cls) % len(colours)]
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 1)
            cv2.putText(
                canvas, f"{int(cls)} {score:.2f}", (x0, max(10, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1
            )
    cv2.putText(canvas, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return canvas
