"""Evaluation sets: what an accuracy measurement was measured on, so that only like is put beside like.

Every accuracy row records an `EvaluationSet` in its context (key "evaluation_set"): the split, how many images,
the image size and a content hash of the image and label files (order-independent; `data.identity` computes it).
Two rows are on the same set when split, image count and hash agree; the image size is a setting of the row
(a comparison has rows at several sizes), so it is recorded and named but does not split a set. Rows recorded
before sets were recorded have none: they are on the pseudo-set "set unknown", never mixed with a known one.

The views pick one set (`choose_set`): the one asked for, else the one with the most variants measured on it
(ties: the most images, then the newest); a known set always goes before "set unknown".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .records import Measurement

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

CONTEXT_KEY = "evaluation_set"
UNKNOWN = "unknown"  # the key of rows that recorded no set
UNKNOWN_NAME = "set unknown"
NOT_MEASURED = "not measured on this set"


@dataclass(frozen=True)
class EvaluationSet:
    """The identity of the files one accuracy measurement read.

    digest: sha256 (hex) over the sorted per-file hashes of the images and their label files.
    data_yaml: where the files were read from (not part of the identity: a copy elsewhere is the same set).
    """

    digest: str
    split: str
    images: int
    imgsz: int | None = None
    data_yaml: str | None = None

    @property
    def key(self) -> str:
        return set_key(self.split, self.images, self.digest)

    @property
    def name(self) -> str:
        return set_name(self.split, self.images, (self.imgsz,) if self.imgsz else (), self.digest)

    def as_context(self) -> dict:
        return {"digest": self.digest, "split": self.split, "images": self.images, "imgsz": self.imgsz,
                "data_yaml": self.data_yaml, "key": self.key, "name": self.name}  # fmt: skip

    @classmethod
    def from_context(cls, context: dict) -> EvaluationSet | None:
        """The set a measurement's context records; None for rows recorded without one."""
        found = context.get(CONTEXT_KEY)
        if not isinstance(found, dict) or not found.get("digest"):
            return None
        return cls(str(found["digest"]), str(found.get("split") or "val"), int(found.get("images") or 0),
                   found.get("imgsz"), found.get("data_yaml"))  # fmt: skip


def set_key(split: str, images: int, digest: str) -> str:
    return f"{split}:{images}:{digest[:12]}"


def set_name(split: str, images: int, sizes: Iterable[int], digest: str) -> str:
    """'val · 200 images · 320 px · a1b2c3' (several sizes: '160/320 px')."""
    px = "/".join(str(s) for s in sorted(set(sizes)))
    return " · ".join(p for p in (split, f"{images} images", f"{px} px" if px else "", digest[:6]) if p)


def key_of(measurement: Measurement) -> str:
    """The set key of one accuracy row (UNKNOWN when it recorded none)."""
    found = EvaluationSet.from_context(measurement.context)
    return found.key if found else UNKNOWN


@dataclass(frozen=True)
class SetSummary:
    """One set as the ledger holds it: its name, the variants measured on it, the sizes it was measured at."""

    key: str
    split: str | None
    images: int | None
    digest: str | None
    data_yaml: str | None
    variant_ids: frozenset[int] = field(default_factory=frozenset)
    sizes: tuple[int, ...] = ()
    newest: int = 0  # the newest measurement id on it

    @property
    def known(self) -> bool:
        return self.key != UNKNOWN

    @property
    def name(self) -> str:
        if not self.known:
            return UNKNOWN_NAME
        return set_name(self.split or "", self.images or 0, self.sizes, self.digest or "")

    @property
    def label(self) -> str:
        """The name with how many variants were measured on it (for a picker)."""
        return f"{self.name} ({len(self.variant_ids)} variant{'s' if len(self.variant_ids) != 1 else ''})"


def summarize(measurements: Iterable[Measurement], variant_ids: Iterable[int] | None = None) -> list[SetSummary]:
    """The sets of the successful accuracy rows among `measurements` (of `variant_ids` only, if given), the
    default first: known before unknown, then most variants, most images, newest."""
    wanted = None if variant_ids is None else {int(v) for v in variant_ids}
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.kind == "accuracy" and m.ok and (wanted is None or m.variant_id in wanted):
            groups.setdefault(key_of(m), []).append(m)
    sets = [_summary(key, rows) for key, rows in groups.items()]
    return sorted(sets, key=lambda s: (not s.known, -len(s.variant_ids), -(s.images or 0), -s.newest))


def _summary(key: str, rows: list[Measurement]) -> SetSummary:
    first = EvaluationSet.from_context(rows[-1].context)
    sizes = tuple(sorted({int(m.context["imgsz"]) for m in rows if m.context.get("imgsz")}))
    return SetSummary(
        key=key,
        split=first.split if first else None,
        images=first.images if first else None,
        digest=first.digest if first else None,
        data_yaml=first.data_yaml if first else None,
        variant_ids=frozenset(m.variant_id for m in rows),
        sizes=sizes,
        newest=max(m.id for m in rows),
    )


def choose_set(sets: list[SetSummary], wanted=None) -> SetSummary | None:
    """The set a view shows: `wanted` (a key, a name, a digest prefix of 6+ characters or an EvaluationSet looked
    up in `sets`; a SetSummary as it is), else the default (the first of `summarize`'s order); None when nothing
    was measured.

    Raises:
        ConfigError: `wanted` names no set the ledger holds; the message lists the ones it does.
    """
    if wanted is None or wanted == "":
        return sets[0] if sets else None
    if isinstance(wanted, SetSummary):  # already chosen (from a wider group of variants): kept as it is
        return wanted
    text = wanted.key if isinstance(wanted, EvaluationSet) else str(wanted).strip()
    for s in sets:
        if text in (s.key, s.name, s.label) or (len(text) >= 6 and s.digest and s.digest.startswith(text)):
            return s
    known = "; ".join(s.name for s in sets) or "none yet"
    raise ConfigError(
        f"no accuracy was measured on the evaluation set {text!r} (sets in the ledger: {known})",
        "pass one of those names or keys, or None for the set with the most variants measured",
    )


def workspace_sets(workspace: Workspace, variant_ids: Iterable[int] | None = None) -> list[SetSummary]:
    """The evaluation sets the workspace's accuracy rows were measured on (of `variant_ids` only, if given), the
    default first: known before "set unknown", then most variants measured on it, most images, newest."""
    return summarize(workspace.ledger.measurements(kind="accuracy"), variant_ids)


evaluation_sets = workspace_sets  # the name `workbench` exports


def rows_on(measurements: Iterable[Measurement], chosen: SetSummary | None) -> list[Measurement]:
    """The successful accuracy rows measured on `chosen` (none when nothing is chosen)."""
    if chosen is None:
        return []
    return [m for m in measurements if m.kind == "accuracy" and m.ok and key_of(m) == chosen.key]
