"""The runtime directory: one gateway per directory, stale sockets cleared, files released."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.errors import ConfigError, GatewayRunning
from tether.gateway.runtime_dir import (
    GATEWAY_JSON,
    SOCKET_NAME,
    claim_runtime_dir,
    prepare_runtime_dir,
    read_gateway_json,
    write_gateway_json,
)


@pytest.fixture
def run_dir(home: Path) -> Path:
    return home / "run"


def unix_socket(path: Path, *, listening: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listening:
        sock.listen(1)
    return sock


@pytest.fixture
def listener(run_dir: Path) -> Iterator[socket.socket]:
    """A live 'gateway' listening on the runtime dir's socket."""
    run_dir.mkdir(mode=0o700, exist_ok=True)
    sock = unix_socket(run_dir / SOCKET_NAME, listening=True)
    try:
        yield sock
    finally:
        sock.close()


def test_claim_prepares_a_private_directory(run_dir: Path) -> None:
    lock = claim_runtime_dir(run_dir)
    try:
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        assert lock.socket_path == run_dir / SOCKET_NAME
        assert lock.fd is not None
    finally:
        lock.release()


def test_claim_tightens_a_directory_others_can_read(run_dir: Path) -> None:
    run_dir.mkdir(mode=0o755)
    run_dir.chmod(0o755)
    claim_runtime_dir(run_dir).release()
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700


def test_a_second_claim_is_refused_and_names_the_running_gateway(run_dir: Path) -> None:
    first = claim_runtime_dir(run_dir)
    try:
        write_gateway_json(run_dir, {"pid": 4242, "url": "http://127.0.0.1:1"})
        with pytest.raises(GatewayRunning) as info:
            claim_runtime_dir(run_dir)
        assert info.value.pid == 4242
        assert info.value.code == "conflict"
    finally:
        first.release()
    second = claim_runtime_dir(run_dir)  # free again once released
    second.release()


def test_a_second_claim_without_gateway_json_is_refused_with_no_pid(run_dir: Path) -> None:
    first = claim_runtime_dir(run_dir)
    try:
        with pytest.raises(GatewayRunning) as info:
            claim_runtime_dir(run_dir)
        assert info.value.pid is None
    finally:
        first.release()


def test_a_stale_socket_is_removed(run_dir: Path) -> None:
    run_dir.mkdir(mode=0o700)
    unix_socket(run_dir / SOCKET_NAME, listening=False).close()  # a dead gateway's leftover
    assert (run_dir / SOCKET_NAME).exists()
    lock = claim_runtime_dir(run_dir)
    try:
        assert not lock.socket_path.exists()
    finally:
        lock.release()


def test_a_dangling_symlink_at_the_socket_path_is_removed(run_dir: Path) -> None:
    run_dir.mkdir(mode=0o700)
    (run_dir / SOCKET_NAME).symlink_to(run_dir / "gone.sock")
    lock = claim_runtime_dir(run_dir)
    try:
        assert not (run_dir / SOCKET_NAME).is_symlink()
    finally:
        lock.release()


def test_a_live_socket_means_a_gateway_is_running(run_dir: Path, listener: socket.socket) -> None:
    write_gateway_json(run_dir, {"pid": 777})
    with pytest.raises(GatewayRunning) as info:
        claim_runtime_dir(run_dir)
    assert info.value.pid == 777
    assert (run_dir / SOCKET_NAME).exists()  # somebody else's socket is left alone
    listener.close()
    # the refused claim let go of the lock: once that gateway is gone, a claim succeeds
    claim_runtime_dir(run_dir).release()


def test_release_removes_our_socket_and_gateway_json(run_dir: Path) -> None:
    lock = claim_runtime_dir(run_dir)
    unix_socket(lock.socket_path, listening=False).close()
    write_gateway_json(run_dir, {"pid": os.getpid()})
    lock.release()
    assert not lock.socket_path.exists()
    assert not (run_dir / GATEWAY_JSON).exists()
    assert lock.fd is None
    lock.release()  # twice is harmless


def test_release_keeps_the_gateway_json_of_another_process(run_dir: Path) -> None:
    lock = claim_runtime_dir(run_dir)
    write_gateway_json(run_dir, {"pid": os.getpid() + 1})
    lock.release()
    assert read_gateway_json(run_dir) == {"pid": os.getpid() + 1}


def test_a_socket_path_too_long_for_unix_sockets_is_a_config_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ConfigError, match="longer than"):
        prepare_runtime_dir(deep)


def test_gateway_json_is_private_and_read_back(run_dir: Path) -> None:
    run_dir.mkdir(mode=0o700)
    path = write_gateway_json(run_dir, {"pid": 1, "url": "http://127.0.0.1:9"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text(encoding="utf-8")) == {"pid": 1, "url": "http://127.0.0.1:9"}
    assert read_gateway_json(run_dir) == {"pid": 1, "url": "http://127.0.0.1:9"}
    assert [p.name for p in run_dir.iterdir()] == [GATEWAY_JSON]  # no temporary file left


@pytest.mark.parametrize("content", [None, "", "not json", "[1, 2]", '"text"'])
def test_an_absent_or_unreadable_gateway_json_is_none(run_dir: Path, content: str | None) -> None:
    run_dir.mkdir(mode=0o700)
    if content is not None:
        (run_dir / GATEWAY_JSON).write_text(content, encoding="utf-8")
    assert read_gateway_json(run_dir) is None
