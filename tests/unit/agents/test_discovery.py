"""Discovery: built-ins, then entry-point plugins; a bad plugin is skipped with a reason."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from tether.agents import ENTRY_POINT_GROUP, builtin, discover


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(
        name=name, value=f"tests.unit.agents.plugins:{value}", group=ENTRY_POINT_GROUP
    )


def test_a_bad_plugin_is_skipped_and_the_others_load() -> None:
    found = discover(
        builtin().values(),
        plugins=[
            ep("echo", "Echo"),
            ep("unknown-cap", "UnknownCapability"),
            ep("unknown-perm", "UnknownPermission"),
            ep("other-name", "WrongId"),
            ep("no-run", "NoRun"),
            ep("fixture", "Fixture"),
            ep("explodes", "explodes"),
            ep("not-callable", "NOT_CALLABLE"),
            ep("missing", "Missing"),
            EntryPoint(name="gone", value="tests.unit.agents.nowhere:X", group=ENTRY_POINT_GROUP),
            ep("operator", "Echo"),
        ],
    )
    assert set(found.backends) == {
        "operator",
        "script",
        "script-once",
        "codex",
        "claude",
        "gemini",
        "codex-acp",
        "acp",
        "echo",
    }
    echo = found.backends["echo"]
    assert (echo.manifest.version, echo.capabilities.streaming) == ("1.2.3", True)
    assert echo.manifest.permissions.tools == ["read"]
    assert found.sources["echo"] == "tests.unit.agents.plugins:Echo"
    assert found.sources["operator"] == "builtin"
    reasons = {s.name: s.reason for s in found.skipped}
    assert "telepathy" in reasons["unknown-cap"]
    assert "root" in reasons["unknown-perm"]
    assert "says id 'echo'" in reasons["other-name"]
    assert "no async run" in reasons["no-run"]
    assert "test fixtures" in reasons["fixture"]
    assert reasons["explodes"] == "RuntimeError: no config for me"
    assert "not a class or factory" in reasons["not-callable"]
    assert reasons["missing"].startswith("import failed: AttributeError")
    assert reasons["gone"].startswith("import failed: ModuleNotFoundError")
    assert "taken by a built-in" in reasons["operator"]


def test_built_ins_have_strict_manifests() -> None:
    for name, backend in builtin().items():
        assert backend.manifest.id == name
        assert backend.capabilities == backend.manifest.capabilities
