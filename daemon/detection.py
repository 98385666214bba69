"""A group's "detected" state with hysteresis, so that a score hovering around one
threshold at a few frames per second does not flap.

On as soon as a score reaches `on`; off once scores have stayed below `off` (< `on`) for
`hold` seconds without interruption. Scores between `off` and `on` keep the current state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """When a group's binary_sensor turns on and off."""

    on: float = 0.5
    off: float = 0.3
    hold: float = 5.0  # seconds below `off` before it turns off


class Detector:
    """The state machine for one (camera, region, group)."""

    def __init__(self, limits: Thresholds) -> None:
        self.limits = limits
        self.state = False
        self.score = 0.0
        self.since: float | None = None  # when the state last changed
        self._below_since: float | None = None

    def update(self, score: float, now: float) -> bool:
        """Feed one score taken at `now` (seconds); True when the state changed."""
        self.score = score
        if not self.state:
            if score >= self.limits.on:
                return self._set(True, now)
            return False
        if score >= self.limits.off:
            self._below_since = None
            return False
        if self._below_since is None:
            self._below_since = now
        return self.tick(now)

    def tick(self, now: float) -> bool:
        """Turn off if the hold time below `off` has passed; True when the state changed."""
        below = self._below_since
        if self.state and below is not None and now - below >= self.limits.hold:
            return self._set(False, now)
        return False

    def _set(self, state: bool, now: float) -> bool:
        self.state = state
        self.since = now
        self._below_since = None
        return True
