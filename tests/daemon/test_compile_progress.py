"""The daemon's compile progress: a journal line and the unit's STATUS= for each report."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from edgebnn.daemon import runner
from edgebnn.daemon.compile_report import compile_reporter
from edgebnn.daemon.logs import JournalFormatter
from edgebnn.daemon.sdnotify import Notifier
from edgebnn.engine.warmup import WarmupProgress


def test_each_report_reaches_the_journal_and_systemctl_status(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        report = compile_reporter(notifier, runner.log)  # as the daemon makes it
        assert report.interval <= 10.0  # type: ignore[attr-defined]
        progress = WarmupProgress("efficientnet-lite0", 2, 6, 6, 12.4, ("mbconv.mbconv_chain",), 2)
        with caplog.at_level(logging.INFO, logger="edgebnn"):
            report(progress)
        line = (
            "compiling kernels for efficientnet-lite0 in 2 processes: 2/6 ready, 12 s; "
            "now mbconv.mbconv_chain"
        )
        assert sock.recv(4096).decode() == f"STATUS={line}"
        record = next(r for r in caplog.records if r.getMessage() == line)
        assert record.levelno == logging.INFO
        journal = JournalFormatter("%(name)s: %(message)s").format(record)
        assert journal == f"<6>edgebnn.daemon.runner: {line}"
    finally:
        sock.close()
