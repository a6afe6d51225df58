"""Run every benchmark in turn: `python bench/run.py [NAME ...]` (default: all).

Each prints its tables and writes bench/results/NAME.json.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = [
    "ping",
    "ledger",
    "tools",
    "files",
    "redaction",
    "policy",
    "agents",
    "conversation",
    "console",
    "feishu",
]


def main() -> int:
    names = sys.argv[1:] or ALL
    unknown = set(names) - set(ALL)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(ALL)}")
        return 2
    failed = 0
    for name in names:
        print(f"\n=== bench/{name}.py")
        failed |= subprocess.run([sys.executable, str(HERE / f"{name}.py")], check=False).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
