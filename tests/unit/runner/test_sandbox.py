"""bubblewrap detection and the sandbox it builds, checked by running real commands."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import unit
from tether.errors import ConfigError
from tether.runner import sandbox
from tether.runner.sandbox import detect, wrap


def _usable() -> bool:
    try:
        return detect("auto").active
    except Exception:
        return False


needs_bwrap = pytest.mark.skipif(
    not _usable(), reason="bubblewrap is not installed or cannot create namespaces here"
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "secret").mkdir(parents=True)
    (tmp_path / "ws" / "secret" / "key").write_text("PRIVATE\n")
    (tmp_path / "ws" / "token.txt").write_text("TOKEN\n")
    (tmp_path / "outside").mkdir()
    return tmp_path / "ws"


@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A directory outside /tmp (which the sandbox replaces with its own tmpfs)."""
    base = Path("/var/tmp")
    if not os.access(base, os.W_OK):
        pytest.skip("/var/tmp is not writable")
    path = Path(tempfile.mkdtemp(prefix="tether-sandbox-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(
    ws: Path, script: str, *, denied: Sequence[Path] = (), network: bool = False
) -> subprocess.CompletedProcess[str]:
    info = detect("bwrap")
    assert info.bwrap_path is not None
    argv = wrap(
        ["bash", "-c", script],
        bwrap=info.bwrap_path,
        workspace=ws,
        cwd=ws,
        denied=denied,
        network=network,
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=unit(30), check=False
    )


def test_detect_off() -> None:
    info = detect("off")
    assert (info.active, info.bwrap_path) == (False, None)
    assert "off" in info.reason


def test_detect_without_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    info = detect("auto")
    assert (info.active, info.bwrap_path) == (False, None)
    assert "not installed" in info.reason
    with pytest.raises(ConfigError, match="bubblewrap cannot be used"):
        detect("bwrap")


def test_detect_with_a_broken_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho 'no namespaces' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    info = detect("auto")
    assert (info.active, info.bwrap_path) == (False, str(fake))
    assert "no namespaces" in info.reason
    with pytest.raises(ConfigError, match="no namespaces"):
        detect("bwrap")


def test_wrap_command_line(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "file-secret").write_text("x")
    denied = [ws / "secret", ws / "token.txt", ws / "missing", tmp_path, tmp_path / "ws" / "."]
    argv = wrap(["echo", "hi"], workspace=ws, cwd=ws / "secret", denied=denied, network=False)
    text = " ".join(argv)
    assert argv[0] == "bwrap"
    assert argv[-3:] == ["--", "echo", "hi"]
    for part in ("--die-with-parent", "--unshare-pid", "--ro-bind / /", "--dev /dev"):
        assert part in text
    assert "--new-session" not in argv
    assert f"--bind {ws} {ws}" in text
    assert f"--tmpfs {ws / 'secret'} --remount-ro {ws / 'secret'}" in text
    assert f"--ro-bind /dev/null {ws / 'token.txt'}" in text
    assert str(ws / "missing") not in text
    assert f"--tmpfs {tmp_path} " not in text  # would hide the workspace itself
    assert "--unshare-net" in argv
    assert argv[argv.index("--chdir") + 1] == str(ws / "secret")
    assert (
        text.index("--tmpfs /tmp") < text.index(f"--bind {ws}") < text.index("--tmpfs " + str(ws))
    )
    assert "--unshare-net" not in wrap(["true"], workspace=ws, cwd=ws, denied=[], network=True)


def test_wrap_binds_only_the_given_writable_roots(ws: Path) -> None:
    argv = wrap(["true"], workspace=ws, cwd=ws, denied=[], network=True, writable=[ws / "secret"])
    text = " ".join(argv)
    assert f"--bind {ws / 'secret'} {ws / 'secret'}" in text
    assert f"--bind {ws} {ws}" not in text


@needs_bwrap
def test_only_the_workspace_is_writable(ws: Path, var_tmp: Path) -> None:
    outside_tmp = ws.parent / "outside" / "f"
    script = (
        "echo ok > inside.txt && echo in-ok; "
        f"echo bad > {var_tmp}/escaped 2>/dev/null || echo var-blocked; "
        f"echo bad > {outside_tmp} 2>/dev/null || echo tmp-blocked; "
        "echo scratch > /tmp/scratch && echo tmp-private"
    )
    r = run(ws, script)
    assert r.stdout.split() == ["in-ok", "var-blocked", "tmp-blocked", "tmp-private"], r.stderr
    assert (ws / "inside.txt").read_text() == "ok\n"
    assert not (var_tmp / "escaped").exists()
    assert not outside_tmp.exists()
    assert not Path("/tmp/scratch").exists()


@needs_bwrap
def test_denied_paths_are_hidden(ws: Path) -> None:
    script = (
        "ls -A secret | wc -l; cat token.txt | wc -c; "
        "touch secret/new 2>/dev/null || echo ro; cat secret/key 2>/dev/null || echo gone"
    )
    r = run(ws, script, denied=[ws / "secret", ws / "token.txt"])
    assert r.stdout.split() == ["0", "0", "ro", "gone"], r.stderr
    assert (ws / "secret" / "key").read_text() == "PRIVATE\n"
    assert not (ws / "secret" / "new").exists()


@needs_bwrap
def test_sandboxed_processes_see_only_their_own(ws: Path) -> None:
    r = run(ws, "ls /proc | grep -c '^[0-9]'")
    assert int(r.stdout) <= 5, r.stdout


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@needs_bwrap
def test_network_off_leaves_only_loopback(ws: Path, listener: int) -> None:
    probe = f"(exec 3<>/dev/tcp/127.0.0.1/{listener}) 2>/dev/null && echo connected || echo refused"
    r = run(ws, f"tail -n +3 /proc/net/dev | cut -d: -f1; {probe}", network=False)
    assert r.stdout.split() == ["lo", "refused"], r.stderr
    r = run(ws, probe, network=True)
    assert r.stdout.split() == ["connected"], r.stderr


def test_probe_result_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "bwrap"
    fake.write_text(f"#!/bin/sh\necho x >> {calls}\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    sandbox._probe.cache_clear()
    try:
        assert detect("auto").active
        assert detect("bwrap").active
        assert calls.read_text().count("x") == 2  # --version and one trial run, once
    finally:
        sandbox._probe.cache_clear()
