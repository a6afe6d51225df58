"""Names and kinds of files that come from chats (tether.gateway.chat_files)."""

from __future__ import annotations

import pytest

from tether.gateway.chat_files import safe_name, sniffed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../.bashrc", "bashrc"),
        ("..\\..\\evil.exe", "evil.exe"),
        ("/etc/passwd", "passwd"),
        ("..", "fallback"),
        ("...", "fallback"),
        ("", "fallback"),
        ("a\u202eexe.txt", "a_exe.txt"),  # a bidi override cannot hide the extension
        ("line\nbreak\x00.txt", "line_break_.txt"),
        ("zero\u200bwidth.md", "zero_width.md"),
        ("  spaced name .txt  ", "spaced name .txt"),
        ("图表.png", "图表.png"),
    ],
)
def test_a_chat_file_name_stays_one_plain_name(name: str, expected: str) -> None:
    assert safe_name(name, "fallback") == expected


def test_a_long_name_is_cut_and_keeps_its_extension() -> None:
    cut = safe_name("x" * 500 + ".tar", "f")
    assert len(cut) == 120
    assert cut.endswith(".tar")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", ("image/png", ".png")),
        (b"\xff\xd8\xff\xe0....", ("image/jpeg", ".jpg")),
        (b"GIF89a....", ("image/gif", ".gif")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("image/webp", ".webp")),
        (b"%PDF-1.7", ("application/pdf", ".pdf")),
        (b"plain text", None),
    ],
)
def test_what_the_bytes_begin_like(head: bytes, expected: tuple[str, str] | None) -> None:
    assert sniffed(head) == expected
