"""The path policy against real trees with symlinks, denied paths and allowed roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether.errors import PolicyDenied, ToolFailed
from tether.security.paths import PathPolicy


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/ws (the workspace), tmp/outside, tmp/home; symlinks in and out of ws."""
    ws = tmp_path / "ws"
    outside = tmp_path / "outside"
    for d in (ws / "src" / "deep", ws / ".ssh", outside, tmp_path / "home" / ".aws"):
        d.mkdir(parents=True)
    (ws / "src" / "a.py").write_text("a\n")
    (ws / ".ssh" / "id_rsa").write_text("key\n")
    (ws / ".sshx").write_text("not denied\n")
    (outside / "secret.txt").write_text("secret\n")
    (ws / "link_out").symlink_to(outside)
    (ws / "file_out").symlink_to(outside / "secret.txt")
    (ws / "dangling").symlink_to(outside / "nothing-yet")
    (ws / "link_in").symlink_to(ws / "src")
    (ws / "to_ssh").symlink_to(ws / ".ssh")
    (ws / "src" / "up").symlink_to("../..")
    return tmp_path


def policy(tree: Path, allowed_roots: list[Path] | None = None) -> PathPolicy:
    denied = [str(tree / "ws" / ".ssh")]
    return PathPolicy(tree / "ws", denied=denied, allowed_roots=allowed_roots, home=tree / "home")


ALLOWED = [
    ("src/a.py", "src/a.py"),
    (".", "."),
    ("src/deep/../a.py", "src/a.py"),
    ("new/nested/file.txt", "new/nested/file.txt"),
    ("link_in/a.py", "src/a.py"),
    (".sshx", ".sshx"),
    ("src/./deep/", "src/deep"),
]


@pytest.mark.parametrize(("arg", "rel"), ALLOWED)
def test_allowed_paths_resolve_inside_the_workspace(tree: Path, arg: str, rel: str) -> None:
    p = policy(tree)
    resolved = p.resolve(arg)
    assert resolved == Path(os.path.realpath(tree / "ws" / rel))
    assert p.relative(resolved) == rel


REFUSED = [
    ("../outside/secret.txt", "outside_workspace", "outside the workspace"),
    ("src/../../outside", "outside_workspace", "outside the workspace"),
    ("{tree}/outside/secret.txt", "outside_workspace", "outside the workspace"),
    ("/etc/passwd", "outside_workspace", "outside the workspace"),
    ("link_out", "outside_workspace", "symlink"),
    ("link_out/secret.txt", "outside_workspace", "symlink"),
    ("file_out", "outside_workspace", "symlink"),
    ("link_out/new-file.txt", "outside_workspace", "symlink"),
    ("link_out/new-dir/new-file.txt", "outside_workspace", "symlink"),
    ("dangling", "outside_workspace", "symlink"),
    ("src/up/outside/secret.txt", "outside_workspace", "symlink"),
    (".ssh", "denied_path", "denied path"),
    (".ssh/id_rsa", "denied_path", "denied path"),
    (".ssh/not-yet", "denied_path", "denied path"),
    ("to_ssh/id_rsa", "denied_path", "denied path"),
    ("{tree}/ws/.ssh/id_rsa", "denied_path", "denied path"),
    ("", "invalid_path", "empty"),
    ("src/a\0.py", "invalid_path", "NUL"),
    ("a" * 5000, "invalid_path", "longer"),
]


@pytest.mark.parametrize(("arg", "reason", "why"), REFUSED)
def test_refused_paths_raise_policy_denied(tree: Path, arg: str, reason: str, why: str) -> None:
    arg = arg.replace("{tree}", str(tree))
    with pytest.raises(PolicyDenied) as info:
        policy(tree).resolve(arg)
    assert info.value.data == {"path": arg, "reason": reason}
    assert why in info.value.message
    assert info.value.code == "policy_denied"


def test_tilde_entries_expand_with_the_given_home(tree: Path) -> None:
    ws = tree / "ws"
    (ws / ".gnupg").mkdir()
    p = PathPolicy(ws, denied=["~/.gnupg", "~/.aws"], home=ws)
    with pytest.raises(PolicyDenied) as info:
        p.resolve(".gnupg/pubring.kbx")
    assert info.value.data["reason"] == "denied_path"
    assert "~/.gnupg" in info.value.message
    assert Path(ws / ".aws") in p.denied_paths
    assert p.resolve("src/a.py") == ws / "src" / "a.py"


def test_denied_entry_that_is_a_symlink_is_denied_by_its_target_too(tree: Path) -> None:
    ws = tree / "ws"
    (ws / "keys").mkdir()
    home = tree / "home"
    (home / ".ssh").symlink_to(ws / "keys")
    p = PathPolicy(ws, denied=["~/.ssh"], home=home)
    with pytest.raises(PolicyDenied) as info:
        p.resolve("keys/id_ed25519")
    assert info.value.data["reason"] == "denied_path"


def test_relative_denied_entries_are_relative_to_the_workspace(tree: Path) -> None:
    p = PathPolicy(tree / "ws", denied=["src/deep"], home=tree / "home")
    with pytest.raises(PolicyDenied):
        p.resolve("src/deep/x")
    assert p.resolve("src/a.py").name == "a.py"


def test_allowed_roots_narrow_the_workspace(tree: Path) -> None:
    ws = tree / "ws"
    p = policy(tree, allowed_roots=[Path("src/deep"), ws / "notes"])
    assert p.resolve("src/deep/x.txt") == ws / "src" / "deep" / "x.txt"
    assert p.resolve("notes/new.md") == ws / "notes" / "new.md"
    for arg in ("src/a.py", ".", "link_in/a.py"):
        with pytest.raises(PolicyDenied) as info:
            p.resolve(arg)
        assert info.value.data == {"path": arg, "reason": "outside_workspace"}
        assert "allowed" in info.value.message
    assert p.writable_roots == (ws / "src" / "deep", ws / "notes")


def test_allowed_roots_outside_the_workspace_allow_nothing_there(tree: Path) -> None:
    p = policy(tree, allowed_roots=[tree / "outside"])
    with pytest.raises(PolicyDenied):
        p.resolve(str(tree / "outside" / "secret.txt"))
    assert p.writable_roots == ()


def test_a_symlinked_workspace_root_is_resolved(tree: Path) -> None:
    alias = tree / "alias"
    alias.symlink_to(tree / "ws")
    p = PathPolicy(alias, home=tree / "home")
    assert p.resolve("src/a.py") == tree / "ws" / "src" / "a.py"
    assert p.resolve(str(alias / "src" / "a.py")) == tree / "ws" / "src" / "a.py"
    with pytest.raises(PolicyDenied):
        p.resolve("link_out/secret.txt")


def test_check_root(tree: Path) -> None:
    assert policy(tree).check_root() == tree / "ws"
    with pytest.raises(ToolFailed) as failed:
        PathPolicy(tree / "missing", home=tree).check_root()
    assert failed.value.data["reason"] == "workspace_missing"
    with pytest.raises(PolicyDenied) as denied:
        PathPolicy(tree / "ws" / "src", denied=[str(tree / "ws")], home=tree).check_root()
    assert denied.value.data["reason"] == "denied_path"
    with pytest.raises(ValueError, match="absolute"):
        PathPolicy(Path("relative/ws"))


def test_walk_skips_denied_entries_and_never_follows_symlinks(tree: Path) -> None:
    p = policy(tree)
    seen = {"/".join(e.rel): e.kind for e in p.walk(tree / "ws")}
    assert seen["src/a.py"] == "file"
    assert seen["src/deep"] == "dir"
    assert seen["link_out"] == "symlink"
    assert seen["src/up"] == "symlink"
    assert ".ssh" not in seen
    assert not any(k.startswith(".ssh/") for k in seen)
    assert seen[".sshx"] == "file"
    assert not any(k.startswith(("link_out/", "link_in/", "src/up/")) for k in seen)
    names = [e.rel for e in p.walk(tree / "ws", max_depth=1)]
    assert names == sorted(names)
    assert all(len(r) == 1 for r in names)
