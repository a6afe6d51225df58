"""The tool table: every tool present, typed, strict and describable."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import msgspec
import pytest

from tests.support.tools import tool_context
from tether.errors import InvalidParams
from tether.runner.tools.registry import TOOLS, describe

NAMES = ["read_file", "write_file", "edit_file", "list_dir", "glob", "grep", "shell"]
NAMES += ["put_file", "get_file", "noop"]
RISKS = {"read_file": "read", "list_dir": "read", "glob": "read", "grep": "read", "noop": "read"}
RISKS |= {"write_file": "write", "edit_file": "write", "shell": "exec"}
RISKS |= {"put_file": "write", "get_file": "read"}


def test_every_tool_is_registered_once() -> None:
    assert list(TOOLS) == NAMES
    for name, spec in TOOLS.items():
        assert spec.name == name
        assert spec.risk == RISKS[name]
        assert inspect.iscoroutinefunction(spec.run)
        assert spec.summary


@pytest.mark.parametrize("name", NAMES)
def test_params_and_results_are_strict_structs(name: str) -> None:
    spec = TOOLS[name]
    for struct in (spec.params, spec.result):
        assert issubclass(struct, msgspec.Struct)
        assert struct.__struct_config__.forbid_unknown_fields
        kinds = {p.kind for p in inspect.signature(struct).parameters.values()}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}
    assert spec.path_params or name == "noop"  # every tool that touches files names its paths
    assert set(spec.path_params) <= set(spec.params.__struct_fields__)


def test_describe_is_json_with_inline_object_schemas() -> None:
    described = describe()
    assert json.loads(json.dumps(described)) == described
    assert [d["name"] for d in described] == NAMES
    for entry in described:
        assert set(entry) == {"name", "summary", "risk", "params_schema", "path_params"}
        assert entry["path_params"] == list(TOOLS[entry["name"]].path_params)
        schema = entry["params_schema"]
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert "$ref" not in schema
    grep = next(d for d in described if d["name"] == "grep")["params_schema"]
    assert grep["required"] == ["pattern"]
    assert grep["properties"]["limit"]["maximum"] == 10_000


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("read_file", {"path": "a", "bogus": 1}),
        ("read_file", {"path": "a", "limit": 20_001}),
        ("read_file", {"path": ""}),
        ("edit_file", {"path": "a", "old": "", "new": "b"}),
        ("shell", {"command": "true", "timeout": 0}),
        ("grep", {}),
        ("list_dir", {"limit": 0}),
    ],
)
def test_parse_rejects_bad_params(name: str, params: dict[str, object]) -> None:
    with pytest.raises(InvalidParams) as info:
        TOOLS[name].parse(params)
    assert info.value.data["tool"] == name


async def test_a_parsed_call_runs(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    write = TOOLS["write_file"]
    result = await write.run(ctx, write.parse({"path": "x/y.txt", "content": "hi"}))
    assert isinstance(result, write.result)
    read = TOOLS["read_file"]
    result = await read.run(ctx, read.parse({"path": "x/y.txt"}))
    assert msgspec.to_builtins(result)["content"] == "hi"
