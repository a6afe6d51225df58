"""Markdown for the console: what it renders, and what hostile text cannot make of it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.gateway.console_markdown import MAX_CHARS, render


def test_the_usual_markdown_renders() -> None:
    html = render(
        "# Title\n\n**bold** *it* ~~gone~~ `code`\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |"
    )
    for part in ("<h1>Title</h1>", "<strong>bold</strong>", "<em>it</em>", "<s>gone</s>",
                 "<code>code</code>", "<li>a</li>", "<td>1</td>"):  # fmt: skip
        assert part in html
    link = render("[docs](https://example.com/a?b=1)")
    assert link == (
        '<p><a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">docs</a></p>\n'
    )


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](  javascript:alert(1))",
        "[x](vbscript:msgbox)",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "<iframe src=https://evil.example></iframe>",
        '<div style="background:url(javascript:alert(1))">x</div>',
        "```\n<script>alert(1)</script>\n```",
        "<!-- <script>alert(1)</script> -->",
        '[x](https://ok.example "t" onmouseover=alert(1))',
        "<form action=https://evil.example><input name=token></form>",
    ],
)
def test_hostile_text_is_shown_as_text_never_as_markup(hostile: str) -> None:
    html = render(hostile)
    assert "<script" not in html
    assert "<iframe" not in html
    assert "<form" not in html
    assert "<input" not in html
    assert "<img" not in html
    assert "<svg" not in html
    assert not re.search(r"<[^>]*\son\w+\s*=", html)  # no event handler attributes
    assert not re.search(r'<a[^>]*href="\s*(javascript|vbscript|data):', html, re.IGNORECASE)
    assert not re.search(r"<[^>]*\sstyle=", html)


def test_an_image_is_its_alt_text_and_loads_nothing() -> None:
    html = render("![a chart <b>](https://tracker.example/pixel.png)")
    assert html == "<p>[image: a chart &lt;b&gt;]</p>\n"


def test_very_long_text_is_cut_and_says_so() -> None:
    html = render("x" * (MAX_CHARS + 10))
    assert html.count("x") <= MAX_CHARS + 1
    assert "cut at 200,000 characters" in html


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>\"'=/ ()[]!:`*#-\njavascrpt onerro")), max_size=80))
def test_no_text_makes_a_tag_or_attribute_outside_the_short_list(text: str) -> None:
    html = render(text)
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em",
                    "s", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "table",
                    "thead", "tbody", "tr", "th", "td"}  # fmt: skip
    for attrs in re.findall(r"<[a-z0-9]+(\s[^>]*)>", html):
        names = set(re.findall(r'\s([a-zA-Z-]+)="', attrs))
        assert names <= {"href", "title", "rel", "start", "align"}, html
