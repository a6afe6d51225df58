"""bubblewrap detection and the allowlist sandbox it builds, checked by running real commands.

bubblewrap is required here: CI installs it, and a missing sandbox is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import unit
from tether.errors import ConfigError, PolicyDenied
from tether.runner import sandbox
from tether.runner.protected import Location
from tether.runner.sandbox import Bind, SandboxSpec, command, detect


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "secret").mkdir(parents=True)
    (tmp_path / "ws" / "secret" / "key").write_text("PRIVATE\n")
    (tmp_path / "ws" / "token.txt").write_text("TOKEN\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "diary.txt").write_text("private\n")
    return tmp_path / "ws"


@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A directory outside /tmp, in a system location the sandbox does not list."""
    path = Path(tempfile.mkdtemp(prefix="tether-sandbox-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(
    ws: Path,
    script: str,
    *,
    hidden: Sequence[Location] = (),
    network: bool = False,
    readonly: Sequence[Path] = (),
    home: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    info = detect("bwrap")
    assert info.bwrap_path is not None
    with contextlib.ExitStack() as stack:
        binds = []
        for path in (*readonly, ws):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            stack.callback(os.close, fd)
            binds.append(Bind(str(path), writable=path == ws, fd=fd))
        spec = SandboxSpec(
            binds=binds,
            cwd=str(ws),
            hidden=hidden,
            home=str(home or ws.parent / "home"),
            network=network,
        )
        argv, fds = command(["bash", "-c", script], spec, bwrap=info.bwrap_path)
        env = {"PATH": "/usr/bin:/bin", "HOME": spec.home or "/"}
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            timeout=unit(30),
            check=False,
            pass_fds=fds,
        )


def test_detect_off() -> None:
    info = detect("off")
    assert (info.status, info.active, info.bwrap_path) == ("off", False, None)
    assert "unsandboxed" in info.reason


def test_detect_without_bwrap(tmp_path: Path) -> None:
    info = detect("auto", str(tmp_path / "no-bwrap"))
    assert (info.status, info.active, info.bwrap_path) == ("unavailable", False, None)
    assert "not installed" in info.reason
    assert "refused" in info.reason
    with pytest.raises(ConfigError, match="bubblewrap cannot be used"):
        detect("bwrap", str(tmp_path / "no-bwrap"))


def test_detect_with_a_broken_bwrap(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho 'no namespaces' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    info = detect("auto", str(fake))
    assert info.status == "unavailable"
    assert "no namespaces" in info.reason
    with pytest.raises(ConfigError, match="no namespaces"):
        detect("bwrap", str(fake))


def test_probe_result_is_cached(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "bwrap"
    fake.write_text(f"#!/bin/sh\necho x >> {calls}\nexit 0\n")
    fake.chmod(0o755)
    sandbox._probe.cache_clear()
    try:
        assert detect("auto", str(fake)).active
        assert detect("bwrap", str(fake)).active
        assert calls.read_text().count("x") == 2  # --version and one trial run, once
    finally:
        sandbox._probe.cache_clear()


def test_command_line_is_an_allowlist(ws: Path) -> None:
    fd = os.open(ws, os.O_RDONLY | os.O_DIRECTORY)
    try:
        spec = SandboxSpec(binds=[Bind(str(ws), True, fd)], cwd=str(ws), home="/home/someone")
        argv, fds = command(["echo", "hi"], spec, bwrap="bwrap")
    finally:
        os.close(fd)
    text = " ".join(argv)
    assert argv[-3:] == ["--", "echo", "hi"]
    assert fds == [fd]
    for part in ("--die-with-parent", "--unshare-all", "--cap-drop ALL", "--dev /dev"):
        assert part in text
    assert "--ro-bind / /" not in text
    assert "--share-net" not in argv
    assert "--new-session" not in argv
    assert f"--bind-fd {fd} {ws}" in text
    assert "--tmpfs /home/someone" in text
    assert "--ro-bind /usr /usr" in text
    assert argv[argv.index("--chdir") + 1] == str(ws)


def test_only_the_workspace_is_writable_and_little_is_visible(ws: Path, var_tmp: Path) -> None:
    outside = ws.parent / "outside" / "f"
    script = (
        "echo ok > inside.txt && echo in-ok; "
        f"echo bad > {var_tmp}/escaped 2>/dev/null || echo var-blocked; "
        f"echo bad > {outside} 2>/dev/null || echo outside-blocked; "
        "echo bad > /usr/escaped 2>/dev/null || echo usr-blocked; "
        "echo scratch > /tmp/scratch && echo tmp-private; "
        "cat $HOME/diary.txt 2>/dev/null || echo home-private; "
        "echo new > $HOME/note && echo home-writable; "
        "ls /root /var /srv /mnt 2>/dev/null | wc -l"
    )
    r = run(ws, script)
    assert r.stdout.split() == [
        "in-ok",
        "var-blocked",
        "outside-blocked",
        "usr-blocked",
        "tmp-private",
        "home-private",
        "home-writable",
        "0",
    ], r.stderr
    assert (ws / "inside.txt").read_text() == "ok\n"
    assert not (var_tmp / "escaped").exists()
    assert not outside.exists()
    assert not (ws.parent / "home" / "note").exists()


def test_protected_paths_inside_the_workspace_are_covered_and_pinned(ws: Path) -> None:
    (ws / "cfg" / "tether").mkdir(parents=True)
    (ws / "cfg" / "tether" / "runner.json").write_text("CREDENTIAL\n")
    hidden = [
        Location(str(ws / "secret"), True, "secret"),
        Location(str(ws / "token.txt"), False, "token"),
        Location(str(ws / "cfg" / "tether"), True, "tether config dir"),
    ]
    script = (
        "ls -A secret | wc -l; cat token.txt | wc -c; "
        "touch secret/new 2>/dev/null || echo ro; cat secret/key 2>/dev/null || echo gone; "
        "cat cfg/tether/runner.json 2>/dev/null || echo gone; "
        "mv cfg cfg2 2>/dev/null || echo pinned; mv secret s2 2>/dev/null || echo pinned; "
        "rm -rf cfg 2>/dev/null; ls cfg"
    )
    r = run(ws, script, hidden=hidden)
    assert r.stdout.split() == ["0", "0", "ro", "gone", "gone", "pinned", "pinned", "tether"], (
        r.stderr
    )
    assert (ws / "secret" / "key").read_text() == "PRIVATE\n"
    assert (ws / "cfg" / "tether" / "runner.json").read_text() == "CREDENTIAL\n"
    assert not (ws / "secret" / "new").exists()


def test_a_workspace_inside_a_protected_path_is_refused(ws: Path) -> None:
    spec = SandboxSpec(
        binds=[Bind(str(ws), True)],
        cwd=str(ws),
        hidden=[Location(str(ws.parent), True, "parent")],
    )
    with pytest.raises(PolicyDenied) as info:
        command(["true"], spec, bwrap="bwrap")
    assert info.value.data["reason"] == "denied_path"


def test_readonly_paths_are_visible_but_not_writable(ws: Path) -> None:
    tools = ws.parent / "home" / ".toolchain"
    (tools / "bin").mkdir(parents=True)
    (tools / "bin" / "hello").write_text("#!/bin/sh\necho hello from the toolchain\n")
    (tools / "bin" / "hello").chmod(0o755)
    script = f"{tools}/bin/hello; touch {tools}/x 2>/dev/null || echo ro"
    r = run(ws, script, readonly=[tools])
    assert r.stdout.splitlines() == ["hello from the toolchain", "ro"], r.stderr
    r = run(ws, f"{tools}/bin/hello 2>/dev/null || echo absent")
    assert r.stdout.split() == ["absent"]


def test_binds_are_by_descriptor_not_by_name(ws: Path) -> None:
    """The directory checked is the directory mounted, even if its name now points elsewhere."""
    info = detect("bwrap")
    assert info.bwrap_path is not None
    fd = os.open(ws, os.O_RDONLY | os.O_DIRECTORY)
    try:
        moved = ws.with_name("ws-moved")
        ws.rename(moved)
        ws.symlink_to(ws.parent / "outside")
        spec = SandboxSpec(binds=[Bind(str(ws), True, fd)], cwd=str(ws))
        argv, fds = command(["cat", "token.txt"], spec, bwrap=info.bwrap_path)
        r = subprocess.run(
            argv, capture_output=True, text=True, timeout=unit(30), check=False, pass_fds=fds
        )
    finally:
        os.close(fd)
    assert r.stdout == "TOKEN\n", r.stderr


def test_no_capabilities_and_only_own_processes(ws: Path) -> None:
    r = run(ws, "grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'")
    cap, count = r.stdout.split("\n")[:2]
    assert cap.split()[1] == "0000000000000000", r.stdout
    assert int(count) <= 5, r.stdout


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_network_off_leaves_only_loopback(ws: Path, listener: int) -> None:
    probe = f"(exec 3<>/dev/tcp/127.0.0.1/{listener}) 2>/dev/null && echo connected || echo refused"
    r = run(ws, f"tail -n +3 /proc/net/dev | cut -d: -f1; {probe}", network=False)
    assert r.stdout.split() == ["lo", "refused"], r.stderr
    r = run(ws, probe, network=True)
    assert r.stdout.split() == ["connected"], r.stderr
