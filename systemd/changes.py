"""Every change the installer makes to a system, made and recorded in one place.

:class:`Installer` writes files, makes directories, removes paths and runs commands,
printing each as an :class:`Action`. ``--dry-run`` only prints; ``--root DIR`` writes
below DIR and only prints host commands, so tests never touch the machine. A change that
is already in place is skipped, so running twice changes nothing the second time.
Standard library only (see :mod:`.installer`).
"""

from __future__ import annotations

import filecmp
import grp
import pwd
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .platforms import ServiceError


@dataclass
class Action:
    """One thing done (or, under --dry-run / --root, that would be done)."""

    verb: str  # write, mkdir, remove, run, keep, note
    target: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.verb:7} {self.target}" + (f"  ({self.detail})" if self.detail else "")


@dataclass
class Installer:
    """Applies file and command changes below root, recording each as an Action.

    Commands run only on the real system (root "/") and never under --dry-run; files are
    written under --root so tests can check them, with the intended owner recorded
    because the service user does not exist there.
    """

    root: Path = Path("/")
    dry_run: bool = False
    echo: Callable[[str], None] = print
    actions: list[Action] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """True when commands really run: the real root and no --dry-run."""
        return self.root == Path("/") and not self.dry_run

    @property
    def changed(self) -> list[Action]:
        return [a for a in self.actions if a.verb in ("write", "mkdir", "remove", "run")]

    def at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def record(self, verb: str, target: str | Path, detail: str = "") -> None:
        action = Action(verb, str(target), detail)
        self.actions.append(action)
        doing = verb in ("write", "mkdir", "remove", "run")
        would = self.dry_run or (verb == "run" and not self.live)
        prefix = "would " if doing and would else ""
        self.echo(f"{prefix}{action}")

    def run(self, cmd: Sequence[str], why: str = "") -> None:
        """Run a host command, or only print it under --dry-run/--root."""
        self.record("run", shlex.join(cmd), why)
        if self.live:
            subprocess.run(list(cmd), check=True)

    def run_below_root(self, cmd: Sequence[str], why: str = "") -> str:
        """Run a command that only writes below root (also under --root, not under
        --dry-run); returns its stdout. Its stderr (progress) goes to the terminal."""
        self.record("run", shlex.join(cmd), why)
        if self.dry_run:
            return ""
        done = subprocess.run(list(cmd), check=False, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise ServiceError(f"{shlex.join(cmd[:5])} ... failed (exit {done.returncode})")
        return done.stdout

    def query(self, cmd: Sequence[str]) -> str | None:
        """Read-only host query (also under --dry-run); None if it fails or under --root."""
        if self.root != Path("/") or not shutil.which(cmd[0]):
            return None
        done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def _chown(self, path: Path, owner: str, group: str) -> None:
        if self.live:
            shutil.chown(path, owner, group)

    def mkdir(self, path: Path, mode: int, owner: str = "root", group: str = "root") -> None:
        """Create a directory (with parents) and set its mode; owner applied when live."""
        real = self.at(path)
        want = f"{mode:04o} {owner}:{group}"
        if (
            real.is_dir()
            and (real.stat().st_mode & 0o7777) == mode
            and self._owned(real, owner, group)
        ):
            return
        self.record("mkdir", path, want)
        if not self.dry_run:
            real.mkdir(parents=True, exist_ok=True)
            real.chmod(mode)
            self._chown(real, owner, group)

    def write(
        self, path: Path, source: Path, mode: int, owner: str = "root", group: str = "root"
    ) -> bool:
        """Copy source to path unless identical (content and mode). True if it changed."""
        real = self.at(path)
        same = real.is_file() and filecmp.cmp(source, real, shallow=False)
        if same and (real.stat().st_mode & 0o7777) == mode and self._owned(real, owner, group):
            return False
        self.record("write", path, f"{mode:04o} {owner}:{group} from {source}")
        if not self.dry_run:
            real.parent.mkdir(parents=True, exist_ok=True)
            tmp = real.with_name(real.name + ".edgebnn-tmp")
            shutil.copyfile(source, tmp)
            tmp.chmod(mode)
            self._chown(tmp, owner, group)
            tmp.replace(real)
        return True

    def remove(self, path: Path) -> None:
        """Remove a file, link or tree if present."""
        real = self.at(path)
        if not (real.exists() or real.is_symlink()):
            return
        self.record("remove", path)
        if not self.dry_run:
            if real.is_dir() and not real.is_symlink():
                shutil.rmtree(real)
            else:
                real.unlink()

    def _owned(self, real: Path, owner: str, group: str) -> bool:
        """Ownership matches; under --root it is only recorded, so it always 'matches'."""
        if self.root != Path("/"):
            return True
        try:
            st = real.stat()
            return (
                pwd.getpwuid(st.st_uid).pw_name == owner
                and grp.getgrgid(st.st_gid).gr_name == group
            )
        except KeyError:
            return False
