"""Logging set-up: plain lines on stderr, journald-friendly under systemd.

Under systemd (JOURNAL_STREAM or INVOCATION_ID set) lines carry no timestamp, since the
journal adds its own, and start with a ``<N>`` syslog priority prefix, which journald
turns into the entry's priority.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """``<priority>name: message`` for journald's stderr capture."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def under_systemd() -> bool:
    """True when stderr goes to the journal."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


#: The name of the one handler :func:`setup_logging` installs.
HANDLER_NAME = "edgebnn-stderr"


def setup_logging(level: str = "info") -> None:
    """Install one stderr handler on the 'edgebnn' logger (idempotent) at `level`."""
    logger = logging.getLogger("edgebnn")
    handler = next((h for h in logger.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(HANDLER_NAME)
        if under_systemd():
            handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
        logger.addHandler(handler)
        logger.propagate = False
    set_level(level)
    logging.getLogger("numba").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    """Change the level (used on reload)."""
    logging.getLogger("edgebnn").setLevel(level.upper())
