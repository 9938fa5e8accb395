"""Progress events that long steps emit, so a CLI bar, a widget or a test can follow and stop them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`done` of `total` units of `stage`; `total` is None when unknown."""

    stage: str
    done: int
    total: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)


ProgressFn = Callable[[Progress], None]
"""A callback; raising `Cancelled` from it stops the step, which then keeps nothing it started."""


def emit(progress: ProgressFn | None, stage: str, done: int, total: int | None = None, message: str = "") -> None:
    """Send one event to `progress` when there is one."""
    if progress is not None:
        progress(Progress(stage, done, total, message))
