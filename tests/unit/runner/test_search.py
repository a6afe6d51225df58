"""grep with both engines on one real tree: same answers, same refusals."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.tools import tool_context
from tether.errors import PolicyDenied, ToolFailed, ToolTimeout
from tether.runner.sandbox import SandboxInfo, detect
from tether.runner.tools import search
from tether.runner.tools.base import ToolContext
from tether.runner.tools.search import GrepParams

HAVE_RG = shutil.which("rg") is not None
needs_rg = pytest.mark.skipif(not HAVE_RG, reason="ripgrep (rg) is not installed")
ENGINES = [
    pytest.param("python", id="python"),
    pytest.param("ripgrep", id="ripgrep", marks=needs_rg),
]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    outside = tmp_path / "outside"
    files: dict[str, bytes] = {
        "a.txt": b"hello world\nHello again\nbye\n",
        "a/b.txt": b"hello from a/b\n",
        "src/m.py": b"def hello():\n    return 'hello'\n",
        "src/deep/n.py": b"x = 'HELLO'\ny = 42\n",
        "src/pkg.py/inner.txt": b"hello inner\n",
        ".hidden.py": b"hello hidden\n",
        ".git/config": b"hello git\n",
        ".ssh/id": b"hello key\n",
        "src/.ssh/also": b"hello nested key\n",
        "bin.dat": b"hello\0binary\n",
        "late_nul.txt": b"hello\n" + b"x" * 9000 + b"\0hello\n",
        "crlf.txt": b"hello\r\nworld\r\n",
        "latin1.txt": b"caf\xe9 hello\n",
        "nonl.txt": b"no newline hello",
        "long.txt": b"hello " + b"y" * 1000 + b"\n",
        "empty.txt": b"",
    }
    for rel, data in files.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_bytes(data)
    outside.mkdir()
    (outside / "leak.txt").write_text("hello outside\n")
    (ws / "link.txt").symlink_to("a.txt")
    (ws / "outlink").symlink_to(outside)
    (ws / "outfile.txt").symlink_to(outside / "leak.txt")
    os.mkfifo(ws / "fifo")
    return ws


SANDBOX = detect("auto")
"""ripgrep runs only inside the sandbox; where bubblewrap works (CI installs it) it is active."""


def ctx_for(ws: Path, timeout: float = 20.0, sandbox: SandboxInfo | None = SANDBOX) -> ToolContext:
    protected = [ws / ".ssh", ws / "src" / ".ssh"]
    return tool_context(ws, protected=protected, timeout=timeout, sandbox_info=sandbox)


async def grep(ws: Path, engine: search.Engine, **params: Any) -> search.GrepResult:
    p = msgspec.convert(params, GrepParams)
    return await search.search(ctx_for(ws), p, engine=engine)


@pytest.mark.parametrize("which", ENGINES)
async def test_grep_finds_text_matches_only(ws: Path, which: search.Engine) -> None:
    r = await grep(ws, which, pattern="hello")
    assert r.engine == which
    assert r.truncated is False
    got = [(m.path, m.line, m.text) for m in r.matches]
    assert got == [
        (".hidden.py", 1, "hello hidden"),
        ("a/b.txt", 1, "hello from a/b"),
        ("a.txt", 1, "hello world"),
        ("crlf.txt", 1, "hello"),
        ("late_nul.txt", 1, "hello"),
        ("late_nul.txt", 2, "x" * 499 + "…"),
        ("latin1.txt", 1, "caf\ufffd hello"),
        ("long.txt", 1, "hello " + "y" * 493 + "…"),
        ("nonl.txt", 1, "no newline hello"),
        ("src/m.py", 1, "def hello():"),
        ("src/m.py", 2, "    return 'hello'"),
        ("src/pkg.py/inner.txt", 1, "hello inner"),
    ]


EQUIVALENCE = [
    {"pattern": "hello"},
    {"pattern": "hello", "ignore_case": True},
    {"pattern": "hello$"},
    {"pattern": "^def"},
    {"pattern": "[0-9]+"},
    {"pattern": "e", "limit": 7},
    {"pattern": "hello", "limit": 3},
    {"pattern": "hello", "limit": 1},
    {"pattern": "hello", "glob": "*.py"},
    {"pattern": "hello", "glob": "*.py", "ignore_case": True},
    {"pattern": "hello", "glob": "src/**/*.py", "ignore_case": True},
    {"pattern": "hello", "glob": "[!a]*.txt"},
    {"pattern": "hello", "glob": "*.txt", "path": "src"},
    {"pattern": "hello", "path": "a.txt"},
    {"pattern": "hello", "path": "a.txt", "glob": "*.py"},
    {"pattern": "hello", "path": ".git"},
    {"pattern": "nothing matches this"},
]


@needs_rg
@pytest.mark.parametrize("params", EQUIVALENCE, ids=lambda p: str(sorted(p.items())))
async def test_engines_agree(ws: Path, params: dict[str, Any]) -> None:
    rg = await grep(ws, "ripgrep", **params)
    py = await grep(ws, "python", **params)
    assert (rg.engine, py.engine) == ("ripgrep", "python")
    assert rg.matches == py.matches
    assert rg.truncated == py.truncated
    if params.get("limit"):
        assert len(rg.matches) == params["limit"]
        assert rg.truncated


@pytest.mark.parametrize("which", ENGINES)
async def test_grep_glob_and_case(ws: Path, which: search.Engine) -> None:
    r = await grep(ws, which, pattern="hello", glob="*.py", ignore_case=True)
    assert [(m.path, m.line) for m in r.matches] == [
        (".hidden.py", 1),
        ("src/deep/n.py", 1),
        ("src/m.py", 1),
        ("src/m.py", 2),
    ]
    r = await grep(ws, which, pattern="hello", path="src", glob="*.txt")
    assert [m.path for m in r.matches] == ["src/pkg.py/inner.txt"]


@pytest.mark.parametrize("which", ENGINES)
async def test_grep_refusals_and_errors(ws: Path, which: search.Engine) -> None:
    for path in ("outlink", ".ssh", "../outside", "outfile.txt"):
        with pytest.raises(PolicyDenied):
            await grep(ws, which, pattern="hello", path=path)
    for path, reason in (("missing", "not_found"), ("fifo", "not_a_file")):
        with pytest.raises(ToolFailed) as info:
            await grep(ws, which, pattern="hello", path=path)
        assert info.value.data["reason"] == reason
    with pytest.raises(ToolFailed) as info:
        await grep(ws, which, pattern="(unclosed")
    assert info.value.data["reason"] == "invalid_pattern"
    with pytest.raises(ToolFailed) as info:
        await grep(ws, which, pattern="x", glob="../*")
    assert info.value.data["reason"] == "invalid_pattern"


async def test_python_engine_honours_the_deadline(ws: Path) -> None:
    ctx = ctx_for(ws, timeout=1e-9)
    with pytest.raises(ToolTimeout):
        await search.search(ctx, GrepParams(pattern="hello"), engine="python")


async def test_default_engine_is_ripgrep_when_installed(ws: Path) -> None:
    r = await search.grep(ctx_for(ws), GrepParams(pattern="bye"))
    assert r.engine == ("ripgrep" if HAVE_RG else "python")
    assert [(m.path, m.line) for m in r.matches] == [("a.txt", 3)]


async def test_python_engine_is_used_without_the_sandbox(ws: Path) -> None:
    ctx = ctx_for(ws, sandbox=None)
    r = await search.grep(ctx, GrepParams(pattern="bye"))
    assert r.engine == "python"
    with pytest.raises(ToolFailed) as info:
        await search.search(ctx, GrepParams(pattern="bye"), engine="ripgrep")
    assert info.value.data["reason"] == "engine_unavailable"
    assert "sandbox" in info.value.message


async def test_python_engine_is_used_without_rg(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(ws / "no-bin-here"))
    r = await search.grep(ctx_for(ws), GrepParams(pattern="bye"))
    assert r.engine == "python"
    with pytest.raises(ToolFailed) as info:
        await search.search(ctx_for(ws), GrepParams(pattern="bye"), engine="ripgrep")
    assert info.value.data["reason"] == "engine_unavailable"
