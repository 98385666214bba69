"""The systemd notify protocol (sd_notify(3)) in the standard library only.

Every method is a no-op when ``NOTIFY_SOCKET`` is not set, so the daemon calls them
unconditionally. The socket is read once and removed from the environment, so that
child processes never talk to systemd on our behalf.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping


class Notifier:
    """Sends state changes to the service manager over its AF_UNIX datagram socket."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.pop("NOTIFY_SOCKET", ""))
        self.watchdog_usec = _watchdog_usec(env)
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self._socket is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False (never an exception) on failure."""
        if self._socket is None or self.address is None:
            return False
        try:
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: start-up (or a reload) has finished."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """RELOADING=1 with the monotonic timestamp systemd >= 253 expects (older ones ignore it)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive and making progress."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """STATUS=: the one-line state shown by `systemctl status`."""
        return self.send(f"STATUS={text}")

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask for more time to finish starting (or reloading)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between required WATCHDOG=1 pings (half of WatchdogSec), or None."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def close(self) -> None:
        """Release the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(value: str) -> str | bytes | None:
    """NOTIFY_SOCKET as an address for sendto(); '@name' is the Linux abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other transports are not supported


def _watchdog_usec(env: MutableMapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID absent or ours)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
