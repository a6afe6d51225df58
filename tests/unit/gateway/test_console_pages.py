"""The console's assets as shipped: nothing the Content-Security-Policy would have to
allow (inline script or style, event-handler attributes, another origin), and a script
that writes text, never HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tether.gateway.console_pages import CONTENT_SECURITY_POLICY, load_assets


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        self._open = tag

    def handle_data(self, data: str) -> None:
        if self._open in ("script", "style") and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def test_the_page_has_no_inline_script_style_or_handler_and_names_only_its_own_assets() -> None:
    assets = load_assets()
    tags = _Tags()
    tags.feed(assets["index.html"].body.decode())
    assert tags.inline == []
    for tag, attrs in tags.found:
        assert not [a for a in attrs if a.startswith("on")], tag
        assert "style" not in attrs, tag
        for key in ("src", "href"):
            if key in attrs and not (tag == "a" and str(attrs[key]).startswith("#/")):
                assert str(attrs[key]).startswith("/console/assets/"), (tag, attrs)
                assert str(attrs[key]).removeprefix("/console/assets/") in assets
    scripts = [a for t, a in tags.found if t == "script"]
    assert scripts == [{"type": "module", "src": "/console/assets/console.js"}]


def test_no_asset_reaches_another_origin_and_the_script_never_writes_html() -> None:
    for name, asset in load_assets().items():
        text = asset.body.decode()
        urls = re.findall(r"\b(?:https?:)?//[\w.-]+", text)
        allowed = ["http://www.w3.org"] if name == "icon.svg" else []  # (its namespace)
        assert urls == allowed, name
        if name.endswith(".js"):
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
                assert sink not in text, (name, sink)
            assert not re.search(r"\beval\(|new Function\(|setTimeout\([\"'`]", text), name
            # HTML is parsed in one place only: the gateway's sanitized Markdown, through
            # the one Trusted Types policy the page's CSP admits
            parsed = text.count("parseFromString(")
            assert parsed == (1 if name == "markdown.js" else 0), name
            if parsed:
                assert "parseFromString(policy.createHTML(" in text


def test_the_policy_allows_nothing_inline_and_nothing_foreign() -> None:
    parts = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert parts["default-src"] == "'none'"
    assert parts.pop("require-trusted-types-for") == "'script'"
    assert parts.pop("trusted-types") == "tether-markdown"  # one policy, no duplicates
    assert all(v in ("'self'", "'none'") for v in parts.values()), parts


def test_the_page_loads_every_module_it_imports_and_no_other() -> None:
    assets = load_assets()
    imported = set()
    for name, asset in assets.items():
        if name.endswith(".js"):
            imported |= set(re.findall(r'from "\./([\w-]+\.js)"', asset.body.decode()))
    scripts = {n for n in assets if n.endswith(".js")}
    assert imported <= scripts
    assert scripts - imported == {"console.js"}  # the entry point, named in the page
