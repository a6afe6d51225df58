"""Shared fixtures: scaled timeouts, temporary homes, and real gateway processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import GatewayProcess, short_tempdir

SCALE = float(os.environ.get("TETHER_TEST_SCALE", "1"))


def unit(seconds: float) -> float:
    """A timeout for tests, scaled for slow machines by $TETHER_TEST_SCALE."""
    return seconds * SCALE


@pytest.fixture
def home() -> Iterator[Path]:
    """A short temporary directory (Unix socket paths must stay under 108 bytes)."""
    with short_tempdir() as path:
        yield path


@pytest.fixture
def gateway(home: Path) -> Iterator[GatewayProcess]:
    """A `tether gateway` subprocess on 127.0.0.1 port 0, stopped with SIGTERM afterwards."""
    proc = GatewayProcess(home)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def pytest_report_header() -> list[str]:
    return [f"tether tests: python {sys.version.split()[0]}, time scale {SCALE}"]
