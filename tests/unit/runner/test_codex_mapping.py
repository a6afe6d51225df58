"""How Codex's messages map to tether's, without the program."""

from __future__ import annotations

from tether.runner.agents.codex import call_id_for, codex_overrides, strip_shell


def test_the_command_inside_codex_shell_wrapper_is_what_policy_sees() -> None:
    assert strip_shell("/bin/bash -c 'echo a > b && cat b'") == "echo a > b && cat b"
    assert strip_shell("/bin/bash -lc 'ls'") == "ls"
    assert strip_shell("python3 -c 'print(1)'") == "python3 -c 'print(1)'"
    assert strip_shell("unbalanced 'quote") == "unbalanced 'quote"


def test_call_ids_are_stable_per_run_and_differ_across_runs() -> None:
    assert call_id_for("run_a", "call_1") == call_id_for("run_a", "call_1")
    assert call_id_for("run_a", "call_1") != call_id_for("run_b", "call_1")
    assert len(call_id_for("run_a", "x" * 500)) <= 64


def test_tethers_safety_settings_come_last_so_they_win() -> None:
    args = codex_overrides(
        {"model": "gpt-5.5", "features.plugins": True, "p": {"name": 'a"b', "n": 1}}
    )
    pairs = [args[i + 1] for i in range(0, len(args), 2)]
    assert pairs.index("features.plugins=true") < pairs.index("features.plugins=false")
    assert pairs[-1].startswith("agents.enabled=")
    assert 'p={name = "a\\"b", n = 1}' in pairs
    assert 'model="gpt-5.5"' in pairs
