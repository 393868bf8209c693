"""Progress reporting that also carries cancellation, shared by every pipeline stage."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


class Cancelled(Exception):
    """Raised inside a stage when the user asked to stop; nothing is written after it."""


class PhotoError(ValueError):
    """A photo (or the output path) cannot be used; the message names the file and the reason."""


ProgressCallback = Callable[[str, float], None]


@dataclass
class Progress:
    """Reports `(stage name, fraction 0..1 of the whole run)` and raises `Cancelled` on request.

    A stage receives a `Progress` and calls `progress.step("fitting", 0.3)` at its own pace;
    `sub(start, end)` maps a stage's local 0..1 onto its slice of the whole run.
    """

    callback: ProgressCallback | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    start: float = 0.0
    end: float = 1.0

    def step(self, stage: str, fraction: float) -> None:
        """Report `fraction` (0..1) of the current stage; raise `Cancelled` if cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")
        if self.callback is not None:
            f = min(max(fraction, 0.0), 1.0)
            self.callback(stage, self.start + (self.end - self.start) * f)

    def sub(self, start: float, end: float) -> Progress:
        """A child reporter for the slice [start, end] of this one's range."""
        span = self.end - self.start
        return Progress(
            self.callback, self.cancel_event, self.start + span * start, self.start + span * end
        )

    def cancel(self) -> None:
        """Ask the running stage to stop at its next `step`."""
        self.cancel_event.set()
