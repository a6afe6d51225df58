"""Path arguments checked by what they say (no file system): confinement and normal form."""

from __future__ import annotations

import pytest

from tether.errors import PolicyDenied, ToolFailed
from tether.security.paths import (
    compile_glob,
    expand_home,
    glob_match,
    show_parts,
    split_path,
    under,
)

ROOTS = ("/srv/ws", "/home/me/ws")

ALLOWED = [
    ("src/a.py", ("src", "a.py")),
    (".", ()),
    ("./", ()),
    ("src/deep/../a.py", ("src", "a.py")),
    ("src/./deep/", ("src", "deep")),
    ("/srv/ws/src/a.py", ("src", "a.py")),
    ("/home/me/ws", ()),
    ("/home/me/ws/../ws/x", ("x",)),
    (".sshx", (".sshx",)),
]


@pytest.mark.parametrize(("arg", "parts"), ALLOWED)
def test_allowed_arguments_become_components(arg: str, parts: tuple[str, ...]) -> None:
    assert split_path(arg, ROOTS) == parts
    assert show_parts(parts) == ("/".join(parts) or ".")


REFUSED = [
    ("../outside/secret.txt", "outside_workspace"),
    ("..", "outside_workspace"),
    ("src/../../outside", "outside_workspace"),
    ("/srv/wsx/file", "outside_workspace"),
    ("/srv/ws/../other", "outside_workspace"),
    ("/etc/passwd", "outside_workspace"),
    ("", "invalid_path"),
    ("src/a\0.py", "invalid_path"),
    ("a" * 5000, "invalid_path"),
]


@pytest.mark.parametrize(("arg", "reason"), REFUSED)
def test_refused_arguments(arg: str, reason: str) -> None:
    with pytest.raises(PolicyDenied) as info:
        split_path(arg, ROOTS)
    assert info.value.data == {"path": arg, "reason": reason}
    assert info.value.code == "policy_denied"


def test_under() -> None:
    assert under(("a", "b"), ("a",))
    assert under(("a",), ("a",))
    assert under(("a",), ())
    assert not under(("ab",), ("a",))
    assert not under(("a",), ("a", "b"))


def test_expand_home() -> None:
    assert expand_home("~/.ssh", "/home/me") == "/home/me/.ssh"
    assert expand_home("~", "/home/me") == "/home/me"
    assert expand_home("/etc/../opt/x/", "/home/me") == "/opt/x"
    assert expand_home("relative", "/home/me") == "relative"


@pytest.mark.parametrize(
    ("pattern", "rel", "matches"),
    [
        ("*.py", ("a.py",), True),
        ("*.py", ("src", "a.py"), False),
        ("**/*.py", ("src", "a.py"), True),
        ("**/*.py", ("a.py",), True),
        ("src/**", ("src", "x", "y"), True),
        ("src/[ab].py", ("src", "c.py"), False),
    ],
)
def test_glob_match(pattern: str, rel: tuple[str, ...], matches: bool) -> None:
    parts, _ = compile_glob(pattern)
    assert glob_match(parts, rel) is matches


@pytest.mark.parametrize("pattern", ["../*", "/etc/*", "src/../../*", "//", "a\0b"])
def test_bad_globs(pattern: str) -> None:
    with pytest.raises(ToolFailed) as info:
        compile_glob(pattern)
    assert info.value.data["reason"] == "invalid_pattern"
