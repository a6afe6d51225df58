"""WorkspaceFS: every path opened by descriptor, no symlink followed, protected by identity."""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

import pytest

from tests.support.race import exchange
from tests.support.tools import workspace_fs
from tether.errors import PolicyDenied, TetherError, ToolFailed
from tether.runner.fs import WorkspaceFS
from tether.runner.protected import ProtectedPaths


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/ws (the workspace) with symlinks in and out, tmp/outside, and a protected ws/.ssh."""
    ws = tmp_path / "ws"
    outside = tmp_path / "outside"
    for d in (ws / "src" / "deep", ws / ".ssh", outside):
        d.mkdir(parents=True)
    (ws / "src" / "a.py").write_text("a\n")
    (ws / ".ssh" / "id_rsa").write_text("key\n")
    (outside / "secret.txt").write_text("secret\n")
    (ws / "link_out").symlink_to(outside)
    (ws / "file_out").symlink_to(outside / "secret.txt")
    (ws / "link_in").symlink_to(ws / "src")
    (ws / "src" / "up").symlink_to("../..")
    return tmp_path


def read(fs: WorkspaceFS, arg: str) -> str:
    fd, _ = fs.open_file(fs.parts(arg))
    with os.fdopen(fd) as f:
        return f.read()


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        ("link_out/secret.txt", "symlink"),
        ("file_out", "symlink"),
        ("link_in/a.py", "symlink"),
        ("src/up/outside/secret.txt", "symlink"),
        (".ssh/id_rsa", "denied_path"),
        ("../outside/secret.txt", "outside_workspace"),
        ("x" * 300 + "/f", "unresolvable"),
    ],
)
def test_reads_that_would_leave_the_workspace_are_refused(
    tree: Path, arg: str, reason: str
) -> None:
    fs = workspace_fs(tree / "ws", protected=[tree / "ws" / ".ssh"])
    with pytest.raises(PolicyDenied) as info:
        read(fs, arg)
    assert info.value.data["reason"] == reason


def test_missing_paths_are_not_found_not_denied(tree: Path) -> None:
    fs = workspace_fs(tree / "ws")
    with pytest.raises(ToolFailed) as info:
        fs.open_file(fs.parts("src/nope/x.py"))
    assert info.value.data["reason"] == "not_found"


def test_protected_names_are_refused_before_they_exist(tree: Path) -> None:
    fs = workspace_fs(tree / "ws", protected=[tree / "ws" / ".aws"])
    with pytest.raises(PolicyDenied) as info:
        fs.parts(".aws/credentials")
    assert info.value.data["reason"] == "denied_path"


def test_a_protected_directory_stays_protected_after_a_rename(tree: Path) -> None:
    ws = tree / "ws"
    guard = ProtectedPaths([("~/.ssh", str(ws / ".ssh"))])
    (ws / ".ssh").rename(ws / "innocent")
    guard.refresh()
    fs = WorkspaceFS(ws, protected=guard)
    with pytest.raises(PolicyDenied) as info:
        fs.open_file(fs.parts("innocent/id_rsa"))
    assert info.value.data["reason"] == "denied_path"
    assert "~/.ssh" in info.value.message
    with fs.directory(()) as fd:
        assert "innocent" not in [e.name for e in fs.scan(fd)]
    assert not [e for e in fs.walk(()) if e.parts[0] == "innocent"]
    assert [loc.path for loc in guard.locations()] == [str(ws / "innocent")]
    guard.close()


def test_hard_links_are_not_read_unless_allowed(tree: Path) -> None:
    ws = tree / "ws"
    os.link(tree / "outside" / "secret.txt", ws / "hard.txt")
    fs = workspace_fs(ws)
    with pytest.raises(PolicyDenied) as info:
        fs.open_file(("hard.txt",))
    assert info.value.data["reason"] == "hardlink"
    assert read(workspace_fs(ws, allow_hardlinks=True), "hard.txt") == "secret\n"


def test_allowed_roots_narrow_the_workspace(tree: Path) -> None:
    fs = workspace_fs(tree / "ws", allowed=["src/deep", "notes"])
    assert fs.parts("src/deep/x.txt") == ("src", "deep", "x.txt")
    assert fs.writable_roots() == (str(tree / "ws" / "src" / "deep"), str(tree / "ws" / "notes"))
    for arg in ("src/a.py", ".", "srcx"):
        with pytest.raises(PolicyDenied) as info:
            fs.parts(arg)
        assert info.value.data == {"path": arg, "reason": "outside_workspace"}


def test_walk_never_follows_symlinks_and_skips_protected(tree: Path) -> None:
    fs = workspace_fs(tree / "ws", protected=[tree / "ws" / ".ssh"])
    seen = {"/".join(e.parts): e.kind for e in fs.walk(())}
    assert seen["src/a.py"] == "file"
    assert seen["src/deep"] == "dir"
    assert seen["link_out"] == "symlink"
    assert seen["src/up"] == "symlink"
    assert not any(k.startswith(".ssh") for k in seen)
    assert not any(k.startswith(("link_out/", "link_in/", "src/up/")) for k in seen)


def test_a_workspace_root_inside_a_protected_path_is_refused(tree: Path) -> None:
    fs = workspace_fs(tree / "ws" / "src", protected=[tree / "ws"])
    with pytest.raises(PolicyDenied) as info:
        fs.check_root()
    assert info.value.data["reason"] == "denied_path"


def test_a_directory_swapped_for_a_symlink_never_lets_a_call_out(tree: Path) -> None:
    """The attack of the review: renameat2(RENAME_EXCHANGE) of d and a symlink to outside,
    in a tight loop, while reads and writes go through d/. The old code escaped within tens
    of calls; here nothing lands outside and nothing outside is read, in thousands."""
    ws, outside = tree / "ws", tree / "outside"
    (ws / "d").mkdir()
    (ws / "d" / "secret.txt").write_text("inside\n")
    (ws / "swap").symlink_to(outside)
    fs = workspace_fs(ws)
    stop = threading.Event()

    def racer() -> None:
        while not stop.is_set():
            exchange(ws / "d", ws / "swap")

    thread = threading.Thread(target=racer)
    thread.start()
    outcomes: collections.Counter[str] = collections.Counter()
    contents: set[str] = set()
    try:
        for i in range(2000):
            try:
                with fs.directory(("d",)) as fd:
                    fs.replace_file(fd, ("d", f"w{i}"), b"x", None)
                    got, _ = fs.open_in(fd, ("d", "secret.txt"))
                    with os.fdopen(got) as f:
                        contents.add(f.read())
                outcomes["ok"] += 1
            except TetherError as exc:
                outcomes[f"{exc.code}/{exc.data['reason']}"] += 1
    finally:
        stop.set()
        thread.join()
    assert [p.name for p in outside.iterdir()] == ["secret.txt"], outcomes
    assert contents == {"inside\n"}
    refusals = {"policy_denied/symlink", "policy_denied/changed", "tool_failed/not_found"}
    assert set(outcomes) <= {"ok", *refusals}, outcomes
    assert outcomes["ok"] > 0, outcomes
    assert outcomes["policy_denied/symlink"] > 0, outcomes
