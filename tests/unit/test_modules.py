"""Every public module says what it exports, and exports only what exists."""

from __future__ import annotations

import importlib
import pkgutil

import tether


def public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(tether.__path__, "tether."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]) or ".migrations" in info.name:
            continue
        names.append(info.name)
    return sorted(names)


def test_every_public_module_has_all() -> None:
    missing, wrong = [], []
    for name in public_modules():
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(name)
            continue
        wrong += [f"{name}.{item}" for item in exported if not hasattr(module, item)]
    assert not missing, f"modules without __all__: {missing}"
    assert not wrong, f"__all__ names that do not exist: {wrong}"
    assert len(public_modules()) > 60
