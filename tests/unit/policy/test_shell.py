"""The shell scanner: every simple command a line would run, or None when unsure."""

from __future__ import annotations

import shlex

import pytest

from tether.policy import parse_shell

NESTED = "ls"
for _ in range(10):
    NESTED = "sh -c " + shlex.quote(NESTED)


def texts(line: str) -> list[str] | None:
    parsed = parse_shell(line)
    return None if parsed is None else [c.text for c in parsed]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ls -la", ["ls -la"]),
        ("ls | grep x && echo ok; pwd & wait", ["ls", "grep x", "echo ok", "pwd", "wait"]),
        ("a || b", ["a", "b"]),
        ("(cd src && make)", ["cd src", "make"]),
        ("{ ls; }", ["ls"]),
        ("FOO=1 BAR=2 env", ["env"]),
        ("/usr/bin/git status", ["git status"]),
        ("echo 'a  b' \"c d\" e\\ f", ["echo a  b c d e f"]),
        ("echo hi > out.txt 2>&1", ["echo hi > out.txt"]),
        ("cat < in.txt >> log", ["cat > log < in.txt"]),
        ("ls 2>/dev/null", ["ls > /dev/null"]),
        ("echo '2>x'", ["echo 2>x"]),
        ("echo $(rm -rf /)", ["echo $(…)", "rm -rf /"]),
        ('echo "$(rm -rf /)"', ["echo $(…)", "rm -rf /"]),
        ("echo `whoami`", ["echo $(…)", "whoami"]),
        ("diff <(ls a) <(ls b)", ["diff $(…) $(…)", "ls a", "ls b"]),
        ("sh -c 'rm -rf build'", ["sh -c rm -rf build", "rm -rf build"]),
        ('bash -lc "curl x | sh"', ["bash -lc curl x | sh", "curl x", "sh"]),
        ("eval 'rm x'", ["eval rm x", "rm x"]),
        ("sudo -u root rm x", ["sudo -u root rm x", "rm x"]),
        ("env -i FOO=1 rm x", ["env -i FOO=1 rm x", "rm x"]),
        ("timeout 5 rm x", ["timeout 5 rm x", "rm x"]),
        ("xargs -n 1 rm", ["xargs -n 1 rm", "rm"]),
        ("nohup sh -c 'rm y' &", ["nohup sh -c rm y", "sh -c rm y", "rm y"]),
        ("if true; then rm x; fi", ["true", "rm x"]),
        ("for f in *.py; do rm $f; done", ["rm $f"]),
        ("while read l; do echo $l; done < in", ["read l", "echo $l", "< in"]),
        ("ls # rm -rf /", ["ls"]),
        ("ls \\\n -la", ["ls -la"]),
        ("", []),
    ],
)
def test_simple_commands(line: str, expected: list[str]) -> None:
    assert texts(line) == expected


def test_pipes_say_what_feeds_each_command() -> None:
    parsed = parse_shell("curl -s x | sudo bash; ls")
    assert parsed is not None
    assert [(c.name, c.piped_from, c.via) for c in parsed] == [
        ("curl", None, None),
        ("sudo", "curl", None),
        ("bash", "curl", "sudo"),
        ("ls", None, None),
    ]


def test_environment_prefixes_are_named() -> None:
    (cmd,) = parse_shell("PATH=/evil:$PATH LD_PRELOAD=x.so make") or []
    assert cmd.env == ("PATH", "LD_PRELOAD")
    assert cmd.argv == ("make",)


@pytest.mark.parametrize(
    "line",
    [
        "cat <<EOF\nrm -rf /\nEOF",  # a heredoc
        "cat <<< 'x'",
        "case $x in a) rm y;; esac",
        "f() { rm -rf /; }; f",  # a function definition
        "echo $((1 + 2))",
        "$CMD -rf /",  # the command name is an expansion
        "x=rm; $x -rf /",
        "echo 'unbalanced",
        'echo "unbalanced',
        "echo $(unbalanced",
        "echo `unbalanced",
        'sh -c "$SCRIPT"',
        'eval "$CODE"',
        "ls >",
        "trailing \\",
        NESTED,  # too deeply
        "x" * 100_001,
    ],
)
def test_what_cannot_be_known_is_none(line: str) -> None:
    assert parse_shell(line) is None


def test_many_commands_are_none() -> None:
    assert parse_shell("; ".join(["ls"] * 300)) is None
    assert parse_shell("; ".join(["ls"] * 200)) is not None
