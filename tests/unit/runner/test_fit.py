"""Results cut down to the gateway's frame limit stay valid and say they were cut."""

from __future__ import annotations

import msgspec
import pytest

from tether.errors import TooLarge
from tether.runner.tools.files import GlobResult, ReadFileResult
from tether.runner.tools.fit import fit
from tether.runner.tools.search import GrepMatch, GrepResult
from tether.runner.tools.shell import ShellResult


def test_a_result_that_fits_is_untouched() -> None:
    result = GlobResult(paths=["a", "b"], truncated=False)
    assert fit(result, 1000) == msgspec.json.encode(result)


def test_lists_keep_as_many_leading_items_as_fit() -> None:
    matches = [GrepMatch(path=f"f{i}.txt", line=i, text="x" * 400) for i in range(5000)]
    data = fit(GrepResult(matches=matches, truncated=False, engine="ripgrep"), 100_000)
    assert len(data) <= 100_000
    cut = msgspec.json.decode(data, type=GrepResult)
    assert cut.truncated
    assert cut.matches == matches[: len(cut.matches)]
    assert len(data) > 100_000 - 500  # as many as fit, not a few


@pytest.mark.parametrize("text", ["y" * 300_000, "é\n\x01" * 100_000])
def test_text_is_cut_with_a_marker(text: str) -> None:
    result = ShellResult(exit_code=0, output=text, truncated=False, duration=1.0, sandboxed=True)
    data = fit(result, 50_000)
    assert len(data) <= 50_000
    cut = msgspec.json.decode(data, type=ShellResult)
    assert cut.truncated
    assert "cut to fit the gateway's frame limit" in cut.output
    assert text.startswith(cut.output.split("\n[... cut")[0])


def test_read_file_content_is_cut() -> None:
    result = ReadFileResult(path="big.txt", size=10**6, content="z" * 10**6)
    cut = msgspec.json.decode(fit(result, 20_000), type=ReadFileResult)
    assert cut.truncated
    assert cut.path == "big.txt"


def test_what_cannot_fit_is_too_large() -> None:
    with pytest.raises(TooLarge):
        fit(GlobResult(paths=[], truncated=False), 5)
