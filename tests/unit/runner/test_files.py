"""read_file, write_file, edit_file, list_dir and glob on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import tool_context
from tether.errors import InvalidParams, PolicyDenied, ToolFailed
from tether.runner.tools import files
from tether.runner.tools.base import ToolContext
from tether.runner.tools.registry import TOOLS


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / ".ssh").mkdir()
    (ws / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    (tmp_path / "outside" / "mod.py").write_text("outside = 1\n")
    return ws


def ctx_for(ws: Path, **config: Any) -> ToolContext:
    return tool_context(ws, protected=[ws / ".ssh"], **config)


# read_file


async def test_read_file_returns_text_and_counts(ws: Path) -> None:
    (ws / "a.txt").write_text("one\ntwo\nthree")
    r = await files.read_file(ctx_for(ws), files.ReadFileParams(path="a.txt"))
    assert r == files.ReadFileResult(
        path="a.txt",
        content="one\ntwo\nthree",
        lines_returned=3,
        total_lines=3,
        truncated=False,
        binary=False,
        size=13,
    )


@pytest.mark.parametrize(
    ("offset", "limit", "content", "returned", "truncated"),
    [
        (0, 2, "l0\nl1\n", 2, True),
        (3, 2, "l3\nl4\n", 2, False),
        (4, 10, "l4\n", 1, False),
        (5, 10, "", 0, False),
        (99, 1, "", 0, False),
    ],
)
async def test_read_file_window(
    ws: Path, offset: int, limit: int, content: str, returned: int, truncated: bool
) -> None:
    (ws / "lines.txt").write_text("".join(f"l{i}\n" for i in range(5)))
    p = files.ReadFileParams(path="lines.txt", offset=offset, limit=limit)
    r = await files.read_file(ctx_for(ws), p)
    assert (r.content, r.lines_returned, r.total_lines, r.truncated) == (
        content,
        returned,
        5,
        truncated,
    )


async def test_read_file_caps_content_bytes(ws: Path) -> None:
    (ws / "big.txt").write_text("".join(f"{i:09d}\n" for i in range(100)))
    r = await files.read_file(
        ctx_for(ws, output_cap_bytes=95), files.ReadFileParams(path="big.txt")
    )
    assert r.truncated
    assert r.content == "".join(f"{i:09d}\n" for i in range(9)) + "00000"
    assert r.lines_returned == 10
    assert r.total_lines == 100


async def test_read_file_cap_never_splits_a_character(ws: Path) -> None:
    (ws / "wide.txt").write_text("é" * 100)
    r = await files.read_file(
        ctx_for(ws, output_cap_bytes=11), files.ReadFileParams(path="wide.txt")
    )
    assert r.content == "é" * 5
    assert (r.truncated, r.binary) == (True, False)


@pytest.mark.parametrize("data", [b"text\0more", b"\xff\xfe not utf-8", b"ok\n" * 5000 + b"\xc3("])
async def test_read_file_reports_binary(ws: Path, data: bytes) -> None:
    (ws / "blob").write_bytes(data)
    r = await files.read_file(ctx_for(ws), files.ReadFileParams(path="blob"))
    assert (r.binary, r.content, r.size) == (True, "", len(data))


async def test_read_file_errors(ws: Path) -> None:
    ctx = ctx_for(ws)
    os.mkfifo(ws / "fifo")
    cases = [("missing.txt", "not_found"), ("src", "is_a_directory"), ("fifo", "not_a_file")]
    for path, reason in cases:
        with pytest.raises(ToolFailed) as info:
            await files.read_file(ctx, files.ReadFileParams(path=path))
        assert info.value.data["reason"] == reason
        assert info.value.data["path"] == path
    (ws / "leak").symlink_to(ws.parent / "outside" / "secret.txt")
    with pytest.raises(PolicyDenied):
        await files.read_file(ctx, files.ReadFileParams(path="leak"))
    with pytest.raises(PolicyDenied):
        await files.read_file(ctx, files.ReadFileParams(path=".ssh/id_rsa"))


# write_file


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


async def test_write_file_creates_dirs_and_file(ws: Path) -> None:
    p = files.WriteFileParams(path="new/deeper/f.txt", content="héllo\n")
    r = await files.write_file(ctx_for(ws), p)
    assert r == files.WriteFileResult(path="new/deeper/f.txt", bytes_written=7, created=True)
    target = ws / "new" / "deeper" / "f.txt"
    assert target.read_text() == "héllo\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert _leftovers(target.parent) == []


async def test_write_file_replaces_and_keeps_mode(ws: Path) -> None:
    target = ws / "run.sh"
    target.write_text("old\n")
    target.chmod(0o750)
    r = await files.write_file(ctx_for(ws), files.WriteFileParams(path="run.sh", content="new\n"))
    assert (r.created, r.bytes_written) == (False, 4)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert _leftovers(ws) == []


async def test_write_file_errors(ws: Path) -> None:
    ctx = ctx_for(ws)
    p = files.WriteFileParams(path="nodir/f.txt", content="x", create_dirs=False)
    with pytest.raises(ToolFailed) as info:
        await files.write_file(ctx, p)
    assert info.value.data["reason"] == "parent_missing"
    assert not (ws / "nodir").exists()
    with pytest.raises(ToolFailed) as info:
        await files.write_file(ctx, files.WriteFileParams(path="src", content="x"))
    assert info.value.data["reason"] == "is_a_directory"
    (ws / "out").symlink_to(ws.parent / "outside")
    for path in ("out/secret.txt", "out/new.txt", "../outside/secret.txt", ".ssh/id_rsa"):
        with pytest.raises(PolicyDenied):
            await files.write_file(ctx, files.WriteFileParams(path=path, content="pwned"))
    assert (ws.parent / "outside" / "secret.txt").read_text() == "secret\n"
    assert not (ws.parent / "outside" / "new.txt").exists()
    assert (ws / ".ssh" / "id_rsa").read_text() == "PRIVATE KEY\n"


async def test_symlinks_are_never_followed_even_inside_the_workspace(ws: Path) -> None:
    (ws / "real.txt").write_text("a")
    (ws / "alias.txt").symlink_to("real.txt")
    (ws / "srclink").symlink_to("src")
    for path in ("alias.txt", "srclink/new.txt"):
        with pytest.raises(PolicyDenied) as info:
            await files.write_file(ctx_for(ws), files.WriteFileParams(path=path, content="b"))
        assert info.value.data["reason"] == "symlink"
        with pytest.raises(PolicyDenied):
            await files.read_file(ctx_for(ws), files.ReadFileParams(path=path))
    assert (ws / "alias.txt").is_symlink()
    assert (ws / "real.txt").read_text() == "a"
    assert not (ws / "src" / "new.txt").exists()


# edit_file


async def test_edit_file_replaces_one_occurrence(ws: Path) -> None:
    target = ws / "m.py"
    target.write_bytes(b"def f():\r\n    return 1\r\n")
    target.chmod(0o640)
    p = files.EditFileParams(path="m.py", old="return 1", new="return 2")
    r = await files.edit_file(ctx_for(ws), p)
    assert r == files.EditFileResult(path="m.py", replacements=1)
    assert target.read_bytes() == b"def f():\r\n    return 2\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("text", "old", "reason", "count"),
    [
        ("a = 1\n", "b = 2", "no_match", 0),
        ("x\nx\nx\n", "x", "multiple_matches", 3),
        ("aaa", "aa", "multiple_matches", 2),
    ],
)
async def test_edit_file_needs_exactly_one_match(
    ws: Path, text: str, old: str, reason: str, count: int
) -> None:
    (ws / "f.txt").write_text(text)
    with pytest.raises(ToolFailed) as info:
        await files.edit_file(ctx_for(ws), files.EditFileParams(path="f.txt", old=old, new="z"))
    assert info.value.data["reason"] == reason
    assert info.value.data["count"] == count
    assert (ws / "f.txt").read_text() == text


async def test_edit_file_rejects_empty_old_and_binary(ws: Path) -> None:
    (ws / "f.txt").write_text("abc")
    with pytest.raises(InvalidParams):
        TOOLS["edit_file"].parse({"path": "f.txt", "old": "", "new": "x"})
    with pytest.raises(ToolFailed) as info:
        await files.edit_file(ctx_for(ws), files.EditFileParams(path="f.txt", old="", new="x"))
    assert info.value.data["reason"] == "empty_old"
    (ws / "b.bin").write_bytes(b"\xff\xfeabc")
    with pytest.raises(ToolFailed) as info:
        await files.edit_file(ctx_for(ws), files.EditFileParams(path="b.bin", old="a", new="x"))
    assert info.value.data["reason"] == "binary_file"


# list_dir


async def test_list_dir_entries(ws: Path) -> None:
    (ws / "b.txt").write_text("12345")
    (ws / "a.lnk").symlink_to(ws.parent / "outside")
    os.mkfifo(ws / "pipe")
    r = await files.list_dir(ctx_for(ws), files.ListDirParams())
    assert r.path == "."
    assert r.truncated is False
    assert [(e.name, e.type, e.size) for e in r.entries] == [
        ("a.lnk", "symlink", 0),
        ("b.txt", "file", 5),
        ("pipe", "other", 0),
        ("src", "dir", 0),
    ]


async def test_list_dir_limit_and_errors(ws: Path) -> None:
    for i in range(5):
        (ws / "src" / f"f{i}").write_text("")
    r = await files.list_dir(ctx_for(ws), files.ListDirParams(path="src", limit=3))
    assert [e.name for e in r.entries] == ["f0", "f1", "f2"]
    assert r.truncated
    (ws / "file").write_text("")
    for path, reason in (("file", "not_a_directory"), ("nope", "not_found")):
        with pytest.raises(ToolFailed) as info:
            await files.list_dir(ctx_for(ws), files.ListDirParams(path=path))
        assert info.value.data["reason"] == reason
    (ws / "out").symlink_to(ws.parent / "outside")
    for path in ("out", ".ssh", ".."):
        with pytest.raises(PolicyDenied):
            await files.list_dir(ctx_for(ws), files.ListDirParams(path=path))


# glob


@pytest.fixture
def globtree(ws: Path) -> Path:
    for rel in ("top.py", "src/a.py", "src/pkg/b.py", "src/pkg/c.txt", ".hidden.py"):
        (ws / rel).write_text("x\n")
    (ws / ".ssh" / "keys.py").write_text("x\n")
    (ws / "outdir").symlink_to(ws.parent / "outside")
    (ws / "outfile.py").symlink_to(ws.parent / "outside" / "mod.py")
    (ws / "alias.py").symlink_to("src/a.py")
    (ws / "srclink").symlink_to("src")
    return ws


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.py", ".", [".hidden.py", "top.py"]),
        ("**/*.py", ".", [".hidden.py", "src/a.py", "src/pkg/b.py", "top.py"]),
        ("src/**/*.py", ".", ["src/a.py", "src/pkg/b.py"]),
        ("*/*.txt", "src", ["src/pkg/c.txt"]),
        ("src/**", ".", ["src", "src/pkg"]),
        ("**/pkg/", ".", ["src/pkg"]),
        ("src/?.py", ".", ["src/a.py"]),
        ("src/[ab].py", ".", ["src/a.py"]),
        ("*link", ".", []),
        ("nothing*", ".", []),
    ],
)
async def test_glob(globtree: Path, pattern: str, path: str, expected: list[str]) -> None:
    r = await files.glob(ctx_for(globtree), files.GlobParams(pattern=pattern, path=path))
    assert r.paths == expected
    assert r.truncated is False


async def test_glob_never_lists_or_enters_symlinks_or_protected_dirs(globtree: Path) -> None:
    r = await files.glob(ctx_for(globtree), files.GlobParams(pattern="**/*"))
    assert not [p for p in r.paths if p.startswith(("outdir/", ".ssh", "srclink/"))]
    for link in ("outdir", "outfile.py", "srclink", "alias.py"):
        assert link not in r.paths
    assert "src/pkg/c.txt" in r.paths
    assert r.paths == sorted(r.paths, key=lambda p: p.split("/"))


async def test_glob_limit_and_bad_patterns(globtree: Path) -> None:
    r = await files.glob(ctx_for(globtree), files.GlobParams(pattern="**/*.py", limit=2))
    assert r.paths == [".hidden.py", "src/a.py"]
    assert r.truncated
    for pattern in ("../*", "/etc/*", "src/../../*", "//"):
        with pytest.raises(ToolFailed) as info:
            await files.glob(ctx_for(globtree), files.GlobParams(pattern=pattern))
        assert info.value.data["reason"] == "invalid_pattern"
    with pytest.raises(PolicyDenied):
        await files.glob(ctx_for(globtree), files.GlobParams(pattern="*", path="outdir"))
