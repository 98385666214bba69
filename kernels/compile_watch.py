"""What Numba is compiling right now, for progress reports during a cold start.

One listener on Numba's ``numba:compile`` event, which every dispatcher fires around a
compile that neither memory nor the on-disk cache could satisfy (cache loads fire nothing).
It keeps, per thread, the stack of kernels being compiled (a kernel's helpers compile
inside it) and counts finished compiles. Generic on purpose: no list of kernels to keep up
to date; whatever Numba compiles shows up here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from numba.core import event


def kernel_name(dispatcher: object) -> str:
    """``module.function`` of a Numba dispatcher, without the ``edgebnn.`` prefix."""
    func = getattr(dispatcher, "py_func", dispatcher)
    module = getattr(func, "__module__", "") or ""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    module = module.removeprefix("edgebnn.").removeprefix("kernels.")
    return f"{module}.{name}" if module else name


@dataclass(frozen=True)
class CompileState:
    """A snapshot: compiles finished so far, and the innermost kernel compiling now."""

    finished: int
    seconds: float  # total time spent in finished top-level compiles
    current: str | None  # the outermost kernel compiling now (None: not compiling)
    current_since: float | None  # time.monotonic() when it started
    inner: str | None  # the innermost one (a helper of ``current``), if different


class _Listener(event.Listener):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stacks: dict[int, list[tuple[str, float]]] = {}
        self.finished = 0
        self.seconds = 0.0

    def on_start(self, ev: event.Event) -> None:
        name = kernel_name(ev.data["dispatcher"])
        with self.lock:
            self.stacks.setdefault(threading.get_ident(), []).append((name, time.monotonic()))

    def on_end(self, ev: event.Event) -> None:
        with self.lock:
            stack = self.stacks.get(threading.get_ident())
            if not stack:
                return
            _, started = stack.pop()
            self.finished += 1
            if not stack:
                self.seconds += time.monotonic() - started

    def state(self) -> CompileState:
        with self.lock:
            stack = next((s for s in self.stacks.values() if s), None)
            if not stack:
                return CompileState(self.finished, self.seconds, None, None, None)
            outer, since = stack[0]
            inner = stack[-1][0] if len(stack) > 1 else None
            return CompileState(self.finished, self.seconds, outer, since, inner)


_listener: _Listener | None = None
_install_lock = threading.Lock()


def watch() -> _Listener:
    """Install the listener (once per process) and return it."""
    global _listener
    with _install_lock:
        if _listener is None:
            _listener = _Listener()
            event.register("numba:compile", _listener)
        return _listener


def compile_state() -> CompileState:
    """What is compiling now in this process (installs the listener on first use)."""
    return watch().state()
