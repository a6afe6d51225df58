"""The runner's call executor in-process: its own concurrency cap, replays, re-sends and
the workspace check, with real tokens and real tools."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import unit
from tether.config import RunnerConfig
from tether.errors import CapabilityDenied, Overloaded, PolicyDenied, ToolFailed
from tether.protocol.runners import ToolExecuteParams, ToolOutput
from tether.runner.executor import CallExecutor
from tether.runner.protected import ProtectedPaths
from tether.runner.sandbox import SandboxInfo
from tether.security.capability import CapabilityIssuer, CapabilityVerifier

RUNNER = "rnr_exec"
_ids = itertools.count()


class Harness:
    def __init__(self, root: Path, max_concurrency: int, **config: Any) -> None:
        self.root = root
        self.issuer = CapabilityIssuer(Ed25519PrivateKey.generate())
        self.executor = CallExecutor(
            config=RunnerConfig(max_concurrency=max_concurrency, sandbox="off", **config),
            workspaces={"app": root},
            verifier=CapabilityVerifier(self.issuer.public_pem, RUNNER),
            sandbox=SandboxInfo(None, "off", "off for this test"),
            protected=ProtectedPaths([]),
            home=root / "home",
        )

    def params(
        self, tool: str, args: dict[str, Any], *, call_id: str | None = None, resend: bool = False
    ) -> ToolExecuteParams:
        call_id = call_id or f"call_{next(_ids)}"
        token, _cap = self.issuer.mint(
            runner_id=RUNNER, call_id=call_id, tool=tool, args=args, workspace="app"
        )
        return ToolExecuteParams(
            call_id=call_id,
            tool=tool,
            args=args,
            workspace="app",
            token=token,
            timeout=30,
            resend=resend,
        )


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    root = tmp_path / "ws"
    root.mkdir()
    return Harness(root, max_concurrency=2)


async def _wait_running(h: Harness, n: int) -> None:
    for _ in range(500):
        if h.executor.inflight == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} calls running, have {h.executor.inflight}")


async def test_the_runner_enforces_its_own_concurrency_cap(harness: Harness) -> None:
    gate = harness.root / "go"
    wait = {"command": f"for i in $(seq 1 500); do [ -e {gate} ] && exit 0; sleep 0.02; done"}
    first = asyncio.ensure_future(harness.executor.execute(harness.params("shell", wait)))
    second = asyncio.ensure_future(harness.executor.execute(harness.params("shell", wait)))
    await _wait_running(harness, 2)

    with pytest.raises(Overloaded):
        await harness.executor.execute(harness.params("noop", {}))

    gate.touch()
    outputs = await asyncio.wait_for(asyncio.gather(first, second), unit(20))
    assert all(isinstance(o, ToolOutput) for o in outputs)
    await _wait_running(harness, 0)
    done = await harness.executor.execute(harness.params("noop", {"echo": "after"}))
    assert b'"after"' in bytes(done.result)
    assert harness.executor.inflight == 0


async def test_failed_and_cancelled_calls_free_their_slot(harness: Harness) -> None:
    with pytest.raises(ToolFailed):
        await harness.executor.execute(harness.params("read_file", {"path": "missing.txt"}))
    p = harness.params("shell", {"command": "sleep 30"})
    task = asyncio.ensure_future(harness.executor.execute(p))
    await _wait_running(harness, 1)
    assert harness.executor.cancel(p.call_id)
    with pytest.raises(ToolFailed):
        await asyncio.wait_for(task, unit(10))
    await _wait_running(harness, 0)


async def test_a_copy_of_a_call_is_a_replay_and_a_resend_returns_the_same_outcome(
    harness: Harness,
) -> None:
    p = harness.params("noop", {"echo": "once"})
    out = await harness.executor.execute(p)
    with pytest.raises(CapabilityDenied) as err:
        await harness.executor.execute(p)
    assert err.value.data == {"reason": "replayed"}
    again = await harness.executor.execute(
        ToolExecuteParams(
            call_id=p.call_id,
            tool=p.tool,
            args=p.args,
            workspace=p.workspace,
            token=p.token,
            timeout=p.timeout,
            resend=True,
        )
    )
    assert bytes(again.result) == bytes(out.result)


async def test_a_workspace_replaced_under_its_path_is_refused(harness: Harness) -> None:
    await harness.executor.execute(harness.params("list_dir", {"path": "."}))
    harness.root.rename(harness.root.with_name("moved"))
    harness.root.mkdir()
    with pytest.raises(PolicyDenied) as err:
        await harness.executor.execute(harness.params("write_file", {"path": "x", "content": "y"}))
    assert err.value.data["reason"] == "workspace_changed"
    assert not (harness.root / "x").exists()


async def test_a_workspace_removed_after_a_call_is_refused(
    harness: Harness,
) -> None:
    await harness.executor.execute(harness.params("list_dir", {"path": "."}))
    shutil.rmtree(harness.root)
    with pytest.raises(ToolFailed) as err:
        await harness.executor.execute(harness.params("list_dir", {"path": "."}))
    assert err.value.data is not None
    assert err.value.data["reason"] == "workspace_missing"


async def test_outcomes_are_kept_within_a_byte_budget(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "big.txt").write_text("x" * 200_000)
    h = Harness(root, 4, outcome_cache_bytes=1_000_000, output_cap_bytes=300_000)
    sent = [h.params("read_file", {"path": "big.txt"}) for _ in range(20)]
    for p in sent:
        await h.executor.execute(p)
        assert h.executor.kept_bytes <= 1_000_000
    assert h.executor.kept_bytes > 600_000  # the newest are still there
    resent = [
        ToolExecuteParams(**{**{f: getattr(p, f) for f in p.__struct_fields__}, "resend": True})
        for p in (sent[0], sent[-1])
    ]
    with pytest.raises(ToolFailed) as err:
        await h.executor.execute(resent[0])
    assert err.value.data["reason"] == "outcome_forgotten"
    assert len(bytes((await h.executor.execute(resent[1])).result)) > 200_000
    with pytest.raises(CapabilityDenied) as denied:  # forgotten, yet never run twice
        await h.executor.execute(sent[0])
    assert denied.value.data["reason"] == "replayed"


async def test_results_are_cut_to_the_frame_limit(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    for i in range(300):
        (root / f"f{i:03}.txt").write_text(("match " + "y" * 490 + "\n") * 10)
    h = Harness(root, 4)
    h.executor.frame_limit = 200_000
    out = await h.executor.execute(h.params("grep", {"pattern": "match", "limit": 10_000}))
    result = json.loads(bytes(out.result))
    assert len(bytes(out.result)) <= 200_000
    assert result["truncated"] is True
    assert 100 < len(result["matches"]) < 3000
