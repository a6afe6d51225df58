from pathlib import Path

from tether.protocol.docs import render

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_protocol_doc_matches_the_method_table() -> None:
    assert DOC.read_text() == render(), "docs/protocol.md is stale: run `make docs`"
