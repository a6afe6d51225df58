"""The web console: page load to the first full render of a session with 1,000 events in
headless Chromium, and what the page weighs.

    python bench/console.py [--quick] [--out FILE]

A real gateway (SQLite); the ``script`` agent fills a session with 10 runs of about 100
events each (streamed text, steps, a Markdown reply). Debian's ``chromium`` through
Playwright, logged in once; each sample is a fresh page (a new browser context: nothing
cached) that opens the session's address and is timed from navigation start to the
moment every run shows its final state and its reply (the target), and to the moment
every reply shows as rendered Markdown (the gateway renders it, a round trip later).
Both are the page's own ``performance.now()``, marked by a ``MutationObserver`` (nothing
polls the page while it loads). Baseline: the same page and measure for a session of one short
run (about 5 events), sampled alternately with the big one. Target: <= 300 ms for 1,000
events.

The payload is every script and stylesheet the page loads, as shipped and gzipped.
Target: <= 150 KB gzip.

Results: bench/results/console.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import shutil
import statistics
import sys
from typing import Any

from playwright.async_api import Browser, async_playwright

from common import Gateway, percentile, print_table, short_tempdir, verdict, write_json
from tether.gateway.console_pages import load_assets
from tether.protocol.methods import RUN_CREATE, RUN_EVENTS, RUN_GET
from tether.protocol.runs import RunCreateParams, RunEventsParams, RunGetParams
from tether.transport.client import RpcClient, connect_ipc

RUNS = 10
DELTAS = 95
TARGET_MS = 300.0
TARGET_KB = 150.0


def script(i: int) -> str:
    reply = f"**Run {i}** is done: `{DELTAS}` pieces, then this *Markdown* reply."
    return f"events {DELTAS} 24\nsay {reply}"


async def finished(admin: RpcClient, run_id: str) -> int:
    for _ in range(600):
        run = await admin.call(RUN_GET, RunGetParams(run_id=run_id))
        if run.state in ("succeeded", "failed", "cancelled", "expired"):
            count, after = 0, 0
            while True:
                page = await admin.call(RUN_EVENTS, RunEventsParams(run_id=run_id, after_seq=after))
                if not page.events:
                    return count
                count += len(page.events)
                after = page.events[-1].seq
        await asyncio.sleep(0.05)
    raise RuntimeError(f"run {run_id} did not finish")


async def fill(admin: RpcClient, runs: int, text: str | None = None) -> tuple[str, int]:
    """A session of ``runs`` scripted runs; its id and how many events it holds."""
    session_id: str | None = None
    events = 0
    for i in range(runs):
        created = await admin.call(
            RUN_CREATE,
            RunCreateParams(input=text or script(i), agent="script", session_id=session_id),
        )
        session_id = created.run.session_id
        events += await finished(admin, created.run.id)
    assert session_id is not None
    return session_id, events


# marks the first moment each condition holds, from a MutationObserver the page runs
# itself: exact to the DOM change, and nothing polls the page while it loads
WATCH = """(runs) => {
  const marks = (window.__marks = {});
  const check = () => {
    if (marks.shown === undefined && document.querySelectorAll(
        '.run[data-state="succeeded"] .msg.agent[data-final]').length === runs) {
      marks.shown = performance.now();
    }
    if (marks.rendered === undefined &&
        document.querySelectorAll('.run .msg.agent .text.md').length === runs) {
      marks.rendered = performance.now();
    }
  };
  new MutationObserver(check).observe(document, {
    subtree: true, childList: true, attributes: true,
  });
}"""


async def render_ms(browser: Browser, url: str, storage: Any, runs: int) -> tuple[float, float]:
    """(ms to every run shown in its final state with its reply, ms to the replies
    shown as Markdown), from navigation start."""
    context = await browser.new_context(storage_state=storage)
    await context.add_init_script(f"({WATCH})({runs})")
    page = await context.new_page()
    try:
        await page.goto(url)
        marks = await page.wait_for_function(
            "() => window.__marks.rendered !== undefined && window.__marks",
            timeout=30_000,
            polling=50,
        )
        found = await marks.json_value()
        return float(found["shown"]), float(found["rendered"])
    finally:
        await context.close()


async def bare_ms(browser: Browser, url: str) -> float:
    """The floor: the same page with script off (its HTML and CSS), to its load event."""
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await page.goto(url, wait_until="load")
        timing = await page.evaluate(
            "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
        return float(timing)
    finally:
        await context.close()


def payload() -> dict[str, Any]:
    assets = load_assets()
    shipped = {n: a.body for n, a in assets.items() if n.endswith((".js", ".css"))}
    raw = sum(len(b) for b in shipped.values())
    packed = sum(len(gzip.compress(b, 6)) for b in shipped.values())
    return {"files": sorted(shipped), "raw_kb": raw / 1024, "gzip_kb": packed / 1024}


async def bench(quick: bool) -> dict[str, Any]:
    samples = 5 if quick else 15
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with short_tempdir() as home:
        gw = Gateway(home)
        try:
            url = gw.info["url"]
            admin = await connect_ipc(str(home / "run" / "gateway.sock"))
            big, big_events = await fill(admin, RUNS)
            small, small_events = await fill(admin, 1, "say **hello**")
            await admin.aclose()
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox"]
                )
                login = await browser.new_context()
                answer = await login.request.post(
                    f"{url}/console/login", data={"token": gw.token}, headers={"Origin": url}
                )
                assert answer.status == 200, await answer.text()
                # a browser that logged in before: its cookie, and the page's own note
                # that it did (so it opens the WebSocket beside the session check)
                storage = {
                    "cookies": await login.cookies(),
                    "origins": [
                        {
                            "origin": url,
                            "localStorage": [{"name": "tether.signedIn", "value": "owner"}],
                        }
                    ],
                }
                await login.close()
                await render_ms(browser, f"{url}/#/s/{small}", storage, 1)  # warm the gateway
                big_ms: list[float] = []
                big_md: list[float] = []
                small_ms: list[float] = []
                for _ in range(samples):
                    shown, rendered = await render_ms(browser, f"{url}/#/s/{big}", storage, RUNS)
                    big_ms.append(shown)
                    big_md.append(rendered)
                    small_ms.append((await render_ms(browser, f"{url}/#/s/{small}", storage, 1))[0])
                bare = [await bare_ms(browser, url) for _ in range(samples)]
                await browser.close()
        finally:
            gw.close()
    big_p50, small_p50 = statistics.median(big_ms), statistics.median(small_ms)
    return {
        "samples": samples,
        "render": {
            "events": big_events,
            "runs": RUNS,
            "p50_ms": big_p50,
            "p90_ms": percentile(big_ms, 90),
            "markdown_p50_ms": statistics.median(big_md),
            "baseline_events": small_events,
            "baseline_p50_ms": small_p50,
            "baseline_p90_ms": percentile(small_ms, 90),
            "ratio_p50": big_p50 / small_p50,
            "bare_page_p50_ms": statistics.median(bare),
            "ratio_to_bare_p50": big_p50 / statistics.median(bare),
            "target_ms": TARGET_MS,
            "met": big_p50 <= TARGET_MS,
        },
        "payload": {**payload(), "target_kb": TARGET_KB},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = asyncio.run(bench(args.quick))
    r, p = result["render"], result["payload"]
    print_table(
        "page load -> first full render of a session (ms, headless Chromium)",
        ["session", "events", "p50", "p90"],
        [
            [f"{r['runs']} runs", r["events"], r["p50_ms"], r["p90_ms"]],
            ["  its replies as Markdown", "", r["markdown_p50_ms"], ""],
            ["1 run (baseline)", r["baseline_events"], r["baseline_p50_ms"], r["baseline_p90_ms"]],
            ["the page, script off (floor)", 0, r["bare_page_p50_ms"], ""],
        ],
    )
    print(
        f"  ratio p50 {r['ratio_p50']:.2f}x the 1-run session, {r['ratio_to_bare_p50']:.2f}x the "
        f"bare page; target <= {TARGET_MS:.0f} ms for "
        f"{r['events']:,} events: {verdict(r['met'])}"
    )
    print_table(
        "what the page loads (scripts and styles)",
        ["files", "raw KB", "gzip KB"],
        [[len(p["files"]), p["raw_kb"], p["gzip_kb"]]],
    )
    print(f"  target <= {TARGET_KB:.0f} KB gzip: {verdict(p['gzip_kb'] <= TARGET_KB)}")
    write_json("console", result, args.out)


if __name__ == "__main__":
    sys.exit(main())
