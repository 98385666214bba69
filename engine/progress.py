"""Showing a warm-up's progress: a bar on a terminal, a log line elsewhere.

Both take :class:`~edgebnn.engine.warmup.WarmupProgress` reports; ``interval`` is how often
the warm-up calls them while it compiles (the bar redraws twice a second, the log gets a
line every few seconds, which is what the journal shows under systemd).
"""

from __future__ import annotations

import logging
from typing import TextIO

from edgebnn.engine.warmup import WarmupProgress


class ProgressBar:
    """``compiling M [#####-----] 3/6 kernels  41 s  now mbconv.mbconv_chain``, redrawn in
    place on a terminal; the final line stays."""

    interval = 0.5

    def __init__(self, stream: TextIO, width: int = 24) -> None:
        self.stream, self.width = stream, width
        self.shown = 0  # characters on the line now

    def __call__(self, progress: WarmupProgress) -> None:
        if progress.finished:
            text, end = progress.line(), "\n"
        else:
            where = f" ({progress.workers} processes)" if progress.workers > 1 else ""
            now = f"  now {', '.join(progress.compiling)}" if progress.compiling else ""
            if progress.total is None:  # found by running: a count, no bar
                count = f"{progress.done} kernels compiled"
            else:
                filled = int(self.width * progress.done / max(progress.total, 1))
                bar = "#" * filled + "-" * (self.width - filled)
                count = f"[{bar}] {progress.done}/{progress.total} kernels"
            text = f"compiling {progress.model}{where} {count}  {progress.elapsed:.0f} s{now}"[:150]
            end = ""
        self.stream.write("\r" + text.ljust(self.shown) + end)
        self.stream.flush()
        self.shown = 0 if end else len(text)


class ProgressLog:
    """One log line per report (INFO), and the final one when something was compiled."""

    interval = 5.0

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self.logger, self.interval = logger, interval

    def __call__(self, progress: WarmupProgress) -> None:
        self.logger.info("%s", progress.line())
