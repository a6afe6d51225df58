"""Markdown from agents, tools and people as HTML the web console can show safely.

Two well-kept libraries, never a hand-written parser:

- **markdown-it-py** (CommonMark, tables, strikethrough) turns the text into HTML. Raw
  HTML in the text is not passed through: ``<script>`` arrives as the text
  ``&lt;script&gt;``. Link targets are checked, so ``javascript:`` and ``data:`` links
  are not made.
- **nh3** (the ammonia sanitizer) then keeps only a short list of tags and attributes.
  Links are limited to ``http``, ``https`` and ``mailto``, and get
  ``rel="noopener noreferrer nofollow"``. Images become their alt text: the console
  loads nothing from elsewhere, and its CSP would refuse it anyway.

Text over :data:`MAX_CHARS` is cut, with a line saying so.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

__all__ = ["ALLOWED_TAGS", "MAX_CHARS", "render"]

MAX_CHARS = 200_000
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
        "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th",
        "td",
    }
)  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
_SCHEMES = frozenset({"http", "https", "mailto"})


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_alt)  # no remote loads: an image is its alt text
    return md


def _image_as_alt(
    renderer: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    alt = renderer.renderInlineAsText(tokens[idx].children or [], options, env)
    return escapeHtml(f"[image: {alt}]" if alt else "[image]")


def render(text: str) -> str:
    """``text`` (Markdown) as sanitized HTML."""
    cut = len(text) > MAX_CHARS
    if cut:
        text = text[:MAX_CHARS]
    html = _parser().render(text)
    if cut:
        html += f"<p><em>… cut at {MAX_CHARS:,} characters</em></p>"
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
