from pathlib import Path

from tether.protocol.docs import render

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_protocol_doc_matches_the_method_table() -> None:
    assert DOC.read_text() == render(), "docs/protocol.md is stale: run `make docs`"


def test_bytes_fields_are_documented_as_the_base64_strings_they_are() -> None:
    doc = render()
    artifact = doc[doc.index("### `artifact.get`") :]
    artifact = artifact[: artifact.index("\n### ", 1)]
    assert "- `data`: string (base64), required" in artifact
    assert ": bytes" not in doc
