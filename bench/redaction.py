"""Redaction on the hot paths, as a ratio to what those paths cost anyway.

Every event payload is redacted and JSON-encoded before the ledger; every tool result is
decoded, redacted and encoded; streamed output goes through a ``StreamRedactor``. Each
row measures one of them on typical data (clean text, and text carrying a few secrets)
and divides by the baseline measured in the same run: plain ``msgspec`` JSON encoding
(events) or a decode+encode round trip (results, streams) of the same data. The last row
is detect-secrets' own line scanner on the same output, for reference.

    python bench/redaction.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json
from tether.security.redaction import redact, redact_json, redact_value
from tether.security.stream_redaction import StreamRedactor

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def _output(lines: int, secrets: bool, rng: random.Random) -> str:
    """Shell-like output: paths, code, numbers; with ``secrets``, one in 200 lines has one."""
    words = ["def", "return", "import", "self", "value", "config", "test", "error", "ok"]
    out = []
    for i in range(lines):
        line = " ".join(rng.choice(words) for _ in range(8))
        line = f"src/app/mod{i % 50}.py:{i}: {line} {rng.randrange(10**6)}"
        if secrets and i % 200 == 7:
            line += " GITHUB_TOKEN=ghp_" + "".join(rng.choices(string.ascii_letters, k=36))
        out.append(line)
    return "\n".join(out) + "\n"


def _rate(fn: Callable[[], Any], size: int, min_time: float = 0.4) -> float:
    """MB/s of ``fn`` over ``size`` bytes, best of three timed runs."""
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_time:
            fn()
            n += 1
        best = min(best, elapsed / n)
    return size / best / 1e6


def _stream(text: str, chunk: int) -> str:
    s = StreamRedactor()
    parts = [s.feed(text[i : i + chunk]) for i in range(0, len(text), chunk)]
    return "".join(parts) + s.flush()


def run(rng: random.Random) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, secrets in (("clean", False), ("with_secrets", True)):
        text = _output(3000, secrets, rng)  # ~250 KB
        size = len(text.encode())
        event = {"call_id": "call_x", "stream": "stdout", "text": text[:500]}
        ev_size = len(_encode(event))
        result = _encode({"exit_code": 0, "stdout": text, "stderr": ""})
        results[label] = {
            "event_encode": _rate(lambda e=event: _encode(e), ev_size),
            "event_redact_encode": _rate(lambda e=event: _encode(redact_value(e)), ev_size),
            "result_roundtrip": _rate(lambda r=result: _encode(_decode(r)), len(result)),
            "result_redact_json": _rate(lambda r=result: redact_json(r), len(result)),
            "stream_split_lines": _rate(lambda t=text: t.splitlines(), size),
            "stream_4k_chunks": _rate(lambda t=text: _stream(t, 4096), size),
            "text_redact": _rate(lambda t=text: redact(t), size),
        }
        try:
            from detect_secrets.core.scan import scan_line
            from detect_secrets.settings import default_settings

            sample = text[:20_000]

            def scan(sample: str = sample) -> None:
                with default_settings():
                    for line in sample.splitlines():
                        list(scan_line(line))

            results[label]["detect_secrets_scan"] = _rate(scan, len(sample), min_time=0.2)
        except ImportError:
            results[label]["detect_secrets_scan"] = None
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON output path (default bench/results/redaction.json)")
    args = parser.parse_args()
    results = run(random.Random(7))
    rows = []
    for label, r in results.items():
        pairs = [
            ("event payload: redact + encode", r["event_redact_encode"], r["event_encode"]),
            ("tool result: redact_json", r["result_redact_json"], r["result_roundtrip"]),
            ("stream, 4 KiB chunks", r["stream_4k_chunks"], r["result_roundtrip"]),
            ("free text: redact", r["text_redact"], r["result_roundtrip"]),
        ]
        if r["detect_secrets_scan"] is not None:
            pairs.append(("detect-secrets scan_line", r["detect_secrets_scan"], r["text_redact"]))
        for name, value, base in pairs:
            rows.append([f"{label}: {name}", value, base, value / base])
    print_table(
        "Redaction throughput (MB/s) vs. the JSON work the same path does anyway "
        "(detect-secrets: vs. tether's redact)",
        ["path", "MB/s", "baseline MB/s", "ratio"],
        rows,
    )
    write_json("redaction", {"results": results}, args.out)
    print(json.dumps({k: round(v["stream_4k_chunks"], 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
