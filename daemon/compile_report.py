"""How the daemon shows kernel compilation while it starts: a bar on a terminal, else a
log line every few seconds (the journal under systemd), and the same line as the systemd
status (``systemctl status``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from edgebnn.daemon.logs import under_systemd
from edgebnn.daemon.sdnotify import Notifier
from edgebnn.engine.progress import ProgressBar, ProgressLog
from edgebnn.engine.warmup import WarmupProgress


def compile_reporter(
    notifier: Notifier, logger: logging.Logger
) -> Callable[[WarmupProgress], None]:
    """The warm-up's reporter; its ``interval`` attribute is how often it wants a report."""
    shown = (
        ProgressBar(sys.stderr)
        if sys.stderr.isatty() and not under_systemd()
        else ProgressLog(logger)
    )

    def report(progress: WarmupProgress) -> None:
        shown(progress)
        notifier.status(progress.line())

    report.interval = shown.interval  # type: ignore[attr-defined]  # a function attribute
    return report
