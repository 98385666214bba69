"""`edgebnn service install/uninstall` into a temporary root: files, modes, owners-to-be,
idempotency, kept config, purge, and the per-distribution plan. Nothing touches the host:
under --root, packages, pip, users and systemctl are only recorded."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from systemd_support import CONFIG, DEBIAN, LEAP15, RASPBIAN, REPO, TUMBLEWEED, UNIT

# path -> (mode, owner:group) the installer must give it
EXPECTED = {
    "etc/systemd/system/edgebnn.service": (0o644, "root:root"),
    "etc/sysusers.d/edgebnn.conf": (0o644, "root:root"),
    "etc/edgebnn": (0o755, "root:root"),
    "etc/edgebnn/edgebnn.yaml": (0o640, "root:edgebnn"),
    "var/lib/edgebnn": (0o750, "edgebnn:edgebnn"),
    "var/lib/edgebnn/models": (0o750, "edgebnn:edgebnn"),
}


def run_install(installer: ModuleType, root: Path, config: Path, **kw: object):
    opts = installer.InstallOptions(config_source=config, **kw)
    lines: list[str] = []
    inst = installer.install(root, dry_run=False, opts=opts, echo=lines.append)
    return inst, lines


def owners(inst) -> dict[str, str]:
    """Path -> the 'mode owner:group' the installer recorded for it."""
    return {a.target.lstrip("/"): a.detail.split(" from ")[0] for a in inst.changed}


def test_dry_run_writes_nothing(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    lines: list[str] = []
    opts = installer.InstallOptions(config_source=config_source)
    inst = installer.install(root, dry_run=True, opts=opts, echo=lines.append)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "etc",
        "etc/os-release",
    ]
    assert {a.target.lstrip("/") for a in inst.changed} == set(EXPECTED)
    assert all(line.startswith(("would ", "note", "#")) for line in lines), lines


def test_install_files_modes_and_owners(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    inst, _ = run_install(installer, root, config_source)
    recorded = owners(inst)
    for rel, (mode, owner) in EXPECTED.items():
        path = root / rel
        assert path.exists(), rel
        assert stat.S_IMODE(path.stat().st_mode) == mode, rel
        assert recorded[rel] == f"{mode:04o} {owner}", rel
    assert (root / "etc/systemd/system/edgebnn.service").read_bytes() == UNIT.read_bytes()
    assert (root / "etc/edgebnn/edgebnn.yaml").read_bytes() == config_source.read_bytes()


def test_host_commands_only_recorded_under_root(installer, make_root, config_source) -> None:
    inst, lines = run_install(installer, make_root(DEBIAN), config_source)
    assert not [a for a in inst.actions if a.verb == "run"]
    notes = "\n".join(lines)
    for expected in ("python3-venv", "-m venv", "pip install", "systemd-sysusers", "enable"):
        assert expected in notes


def test_second_install_changes_nothing(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    run_install(installer, root, config_source)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    inst, _ = run_install(installer, root, config_source)
    assert inst.changed == []
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_edited_config_is_kept(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    run_install(installer, root, config_source)
    config = root / "etc/edgebnn/edgebnn.yaml"
    config.write_text(config.read_text() + "# edited by the user\n")
    edited = config.read_text()
    _, lines = run_install(installer, root, config_source)
    assert config.read_text() == edited
    assert (root / "etc/edgebnn/edgebnn.yaml.new").read_bytes() == config_source.read_bytes()
    assert any(line.startswith("keep") and "edgebnn.yaml" in line for line in lines)
    again, _ = run_install(installer, root, config_source)
    assert again.changed == []


def test_unit_update_is_written(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    run_install(installer, root, config_source)
    (root / "etc/systemd/system/edgebnn.service").write_text("[Unit]\n")
    inst, _ = run_install(installer, root, config_source)
    assert [a.target for a in inst.changed] == ["/etc/systemd/system/edgebnn.service"]
    assert (root / "etc/systemd/system/edgebnn.service").read_bytes() == UNIT.read_bytes()


def test_uninstall_keeps_config_and_models(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    run_install(installer, root, config_source)
    (root / "var/lib/edgebnn/models/m.ell").write_text("{}")
    (root / "var/cache/edgebnn/numba").mkdir(parents=True)
    installer.uninstall(root, echo=lambda _: None)
    assert not (root / "etc/systemd/system/edgebnn.service").exists()
    assert not (root / "etc/sysusers.d/edgebnn.conf").exists()
    assert not (root / "var/cache/edgebnn").exists()
    assert (root / "etc/edgebnn/edgebnn.yaml").is_file()
    assert (root / "var/lib/edgebnn/models/m.ell").is_file()
    assert installer.uninstall(root, echo=lambda _: None).changed == []


def test_purge_removes_config_and_models(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    run_install(installer, root, config_source)
    installer.uninstall(root, purge=True, echo=lambda _: None)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "etc",
        "etc/os-release",
        "etc/systemd",
        "etc/systemd/system",
        "etc/sysusers.d",
        "var",
        "var/lib",
    ]


def test_uninstall_dry_run_removes_nothing(installer, make_root, config_source) -> None:
    root = make_root(DEBIAN)
    run_install(installer, root, config_source)
    inst = installer.uninstall(root, dry_run=True, purge=True, echo=lambda _: None)
    assert inst.changed
    assert (root / "etc/systemd/system/edgebnn.service").exists()


@pytest.mark.parametrize(
    ("os_release", "machine", "manager", "mode", "must_have"),
    [
        (DEBIAN, "x86_64", "apt", "wheels", ["python3-venv"]),
        (DEBIAN, "aarch64", "apt", "wheels", ["python3-venv"]),
        (
            RASPBIAN,
            "armv7l",
            "apt",
            "distro",
            ["python3-numba", "python3-opencv", "python3-zmq", "python3-yaml", "python3-picamera2"],
        ),
        (TUMBLEWEED, "aarch64", "zypper", "wheels", ["python3"]),
        (
            TUMBLEWEED,
            "armv7l",
            "zypper",
            "distro",
            ["python3-numba", "python3-pyzmq", "python3-PyYAML", "python3-opencv"],
        ),
        (LEAP15, "aarch64", "zypper", "wheels", ["python311"]),
    ],
    ids=[
        "debian-x86_64",
        "debian-aarch64",
        "raspbian-armv7l",
        "tw-aarch64",
        "tw-armv7l",
        "leap15-aarch64",
    ],
)
def test_platform_plan(platforms, make_root, os_release, machine, manager, mode, must_have) -> None:
    plat = platforms.detect_platform(make_root(os_release), machine)
    assert (plat.manager, plat.default_mode) == (manager, mode)
    assert set(must_have) <= set(platforms.system_packages(plat, plat.default_mode))


def test_distro_mode_venv_uses_system_site(installer, make_root, config_source) -> None:
    root = make_root(RASPBIAN)
    _, lines = run_install(installer, root, config_source, machine="armv7l")
    text = "\n".join(lines)
    assert "--system-site-packages" in text
    assert "--no-deps" in text
    assert "serially" in text  # the installer says parallel kernels are off


def test_leap15_builds_venv_on_python311(installer, make_root, config_source) -> None:
    _, lines = run_install(installer, make_root(LEAP15), config_source, machine="aarch64")
    assert "/usr/bin/python3.11 -m venv" in "\n".join(lines)


def test_32bit_userland_on_64bit_kernel(platforms, monkeypatch) -> None:
    monkeypatch.setattr(platforms.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(platforms.struct, "calcsize", lambda fmt: 4)
    assert platforms.userland_machine() == "armv7l"


def test_unsupported_distribution(platforms, make_root) -> None:
    root = make_root('ID=fedora\nPRETTY_NAME="Fedora Linux 40"\n')
    with pytest.raises(platforms.ServiceError, match="Fedora"):
        platforms.detect_platform(root, "aarch64")


def test_firewall_advice_per_distribution(installer, platforms, make_root, tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    suse = platforms.detect_platform(make_root(TUMBLEWEED), "aarch64")
    assert "firewall-cmd --permanent --add-port=5556/tcp" in "\n".join(
        installer.advice(suse, config, tmp_path)
    )
    pi = platforms.detect_platform(make_root(RASPBIAN), "aarch64")
    text = "\n".join(installer.advice(pi, config, tmp_path))
    assert "ufw allow" in text and "nft add rule" in text


def test_install_script_dry_run(make_root, config_source) -> None:
    """systemd/install.sh hands over to the installer in systemd/ without importing edgebnn."""
    root = make_root(DEBIAN)
    done = subprocess.run(
        [
            "sh",
            str(REPO / "systemd/install.sh"),
            "--dry-run",
            "--root",
            str(root),
            "--config-source",
            str(config_source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "would write   /etc/systemd/system/edgebnn.service" in done.stdout
    assert f"pip install --upgrade {REPO}" in done.stdout
    assert not (root / "etc/edgebnn").exists()


def test_install_script_uninstalls_too(make_root, config_source) -> None:
    """`systemd/install.sh uninstall` removes what an install below the same root wrote."""
    root = make_root(DEBIAN)
    script = str(REPO / "systemd/install.sh")
    install = ["sh", script, "--root", str(root), "--config-source", str(config_source)]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (root / "etc/systemd/system/edgebnn.service").is_file()
    uninstall = ["sh", script, "uninstall", "--root", str(root)]
    done = subprocess.run(uninstall, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not (root / "etc/systemd/system/edgebnn.service").exists()
    assert (root / "etc/edgebnn/edgebnn.yaml").is_file()  # config kept without --purge


def test_script_refuses_without_root_privileges(installer, commands, monkeypatch) -> None:
    monkeypatch.setattr(installer.os, "geteuid", lambda: 1000)
    assert commands.main(["service", "install"]) == 1
