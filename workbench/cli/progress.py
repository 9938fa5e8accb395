"""The progress printer the `workbench` commands hand to the core: a line per stage, redrawn on a terminal."""

from __future__ import annotations

import sys
import time

from ..core.progress import Progress


class ProgressPrinter:
    """One line per stage on a terminal (redrawn in place), a line per 10% otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.stage, self.last_tenth, self.start = None, -1, time.perf_counter()

    def __call__(self, event: Progress) -> None:
        if event.stage != self.stage:
            if self.stage is not None and self.tty:
                self.stream.write("\n")
            self.stage, self.last_tenth, self.start = event.stage, -1, time.perf_counter()
        fraction = event.fraction
        if fraction is None:
            text = f"{event.stage}: {event.message}".rstrip(": ")
        else:
            bar = "#" * int(fraction * 24)
            text = (
                f"{event.stage:<18} [{bar:<24}] {event.done}/{event.total} "
                f"{time.perf_counter() - self.start:5.1f}s {event.message}"
            )
        if self.tty:
            self.stream.write("\r" + text[:150])
        elif fraction is None or int(fraction * 10) > self.last_tenth:
            self.last_tenth = -1 if fraction is None else int(fraction * 10)
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.stage is not None:
            self.stream.write("\n")
