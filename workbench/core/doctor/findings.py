"""What a doctor finds: one `Finding` per check (a verdict, the evidence, the fix and the metric after it), and a
`Diagnosis` that ranks them, names the most likely cause in one sentence and can be recorded in the ledger."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


class Verdict(StrEnum):
    """How a check judged the deployment: nothing wrong, something to look at, the cause, or no verdict because its
    measurements disagreed (a saving seen on average that did not hold across the alternating blocks)."""

    OK = "ok"
    SUSPECT = "suspect"
    CAUSE = "cause"
    INCONCLUSIVE = "inconclusive"


SEVERITY = {Verdict.CAUSE: 3, Verdict.SUSPECT: 2, Verdict.INCONCLUSIVE: 1, Verdict.OK: 0}
ACTING = (Verdict.CAUSE, Verdict.SUSPECT)  # the verdicts a diagnosis names as its most likely cause


@dataclass(frozen=True)
class Finding:
    """One check's result.

    `cause` is a short id of what was found (e.g. "channels_swapped", "no_warmup"): what the lab's tests compare
    with the planted fault. `evidence` holds the numbers (JSON-serialisable), `pictures` paths of images that show
    it, `after` the metric measured once the fix was applied (None where the fix cannot be applied here).
    """

    check: str
    verdict: Verdict
    title: str
    fix: str = ""
    cause: str | None = None
    evidence: dict = field(default_factory=dict)
    after: dict | None = None
    pictures: tuple[str, ...] = ()
    strength: float = 0.0  # how strongly the evidence points at `cause` (0..1): ranks findings of one verdict

    def as_dict(self) -> dict:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["pictures"] = list(self.pictures)
        return json.loads(json.dumps(data, default=_plain))


@dataclass(frozen=True)
class Diagnosis:
    """All findings of one doctor run, ranked (causes first, the strongest evidence first)."""

    kind: str  # "accuracy" or "speed"
    findings: tuple[Finding, ...]
    subject: str = ""  # what was diagnosed, in words (the deployment's artifact or the callable's name)
    context: dict = field(default_factory=dict)  # images, sizes, thresholds, reference, environment

    @classmethod
    def of(cls, kind: str, findings, subject: str = "", context: dict | None = None) -> Diagnosis:
        ranked = sorted(findings, key=lambda f: (-SEVERITY[f.verdict], -f.strength))
        return cls(kind, tuple(ranked), subject, context or {})

    @property
    def most_likely(self) -> Finding | None:
        """The top-ranked cause or suspect; None when every check passed or was inconclusive."""
        top = self.findings[0] if self.findings else None
        return top if top is not None and top.verdict in ACTING else None

    @property
    def inconclusive(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.verdict is Verdict.INCONCLUSIVE)

    @property
    def ok(self) -> bool:
        return self.most_likely is None

    def sentence(self) -> str:
        """One sentence: the most likely cause and its fix, or that nothing was found."""
        top, unsure = self.most_likely, self.inconclusive
        if top is None and unsure:
            named = "; ".join(f"{f.check}: {f.title}" for f in unsure)
            return f"No {self.kind} cause named: {named}. Run the doctor again on a quieter machine."
        if top is None:
            checks = ", ".join(f.check for f in self.findings)
            return f"No {self.kind} problem found: every check passed ({checks})."
        after = f" After the fix: {_after_words(top.after)}." if top.after else ""
        return f"Most likely cause: {top.title}. Fix: {top.fix}.{after}"

    def record(self, workspace: Workspace, variant_id: int) -> int:
        """Store the diagnosis in the ledger as a measurement of kind "diagnosis" of `variant_id`."""
        metrics = {
            "kind": self.kind,
            "ok": self.ok,
            "sentence": self.sentence(),
            "cause": self.most_likely.cause if self.most_likely else None,
            "findings": [f.as_dict() for f in self.findings],
        }
        context = {**json.loads(json.dumps(self.context, default=_plain)), "subject": self.subject, "status": "ok"}
        return workspace.ledger.add_measurement(variant_id, "diagnosis", metrics, context)


def _after_words(after: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in after.items())


def _plain(value):
    """JSON for numpy scalars and arrays, paths and anything else (as text)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
