"""Execution page in headless Chromium: navigation until the timeline shows the failing step's annotation.

One execution per size is recorded through services.reporting as the writer (tiny payloads, so the
figure and not payload decoding is what is measured), the last step failing with a distinctive error.
The page is the served product (`flowledger serve`, shared with the HTTP measures); the clock runs from
`page.goto` until the plotly SVG of #execution-timeline holds that error text in an annotation.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import serving
from bench.runner import Context, Row
from services import reporting, timeline
from services.objectstore import open_store
from services.payloads import PayloadConfig

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TARGETS = {500: 1.0, 10_000: 3.0}
TIMEOUT_MS = 60_000
WARMUP_LOADS = 2 * serving.WORKERS
# innerText of every annotation in the timeline's SVG, searched for the error (plotly escapes, we compare text).
FOUND_JS = """(needle) => Array.from(document.querySelectorAll('#execution-timeline .annotation-text'))
    .some(el => (el.textContent || '').includes(needle))"""
# Where the time went, read from the page's resource timings once the annotation is there: the timeline callback
# (the largest _dash-update-component answer: server time to first byte, size), the plotly.js bundle fetched (size and
# when its request started: the first dcc.Graph to mount asks for it), and
# how long after the callback's answer the annotation appeared (plotly.js evaluation if still pending + drawing).
SPLIT_JS = """() => {
  const rs = performance.getEntriesByType('resource');
  const cb = rs.filter(r => r.name.includes('_dash-update-component'))
               .sort((a, b) => b.decodedBodySize - a.decodedBodySize)[0];
  const pl = rs.find(r => /plotly[^/]*\\.js/.test(r.name));
  return {server: cb ? cb.responseStart - cb.requestStart : null, sent: cb ? cb.requestStart : null,
          kb: cb ? cb.decodedBodySize / 1024 : null, plotly_kb: pl ? pl.decodedBodySize / 1024 : null,
          plotly_at: pl ? pl.startTime : null,
          drawn: cb ? performance.now() - cb.responseEnd : null};
}"""


def sizes(ctx: Context) -> list[int]:
    """500 and 10,000 steps at every scale: recording 10,000 tiny steps takes a few seconds."""
    return [500, 10_000]


def error_for(steps: int) -> str:
    """A distinctive error under the 80-character annotation limit."""
    return f"BENCH-{steps}-E51 card declined by the payment provider"


def record(ctx: Context, steps: int) -> str:
    """One failed execution of `steps` steps (the last one failed); returns its id."""
    cfg = PayloadConfig(store=open_store("", local_root=ctx.workdir / "objects"))
    start = datetime.now(UTC) - timedelta(hours=2)
    reports = []
    for seq in range(steps):
        last = seq == steps - 1
        began = start + timedelta(milliseconds=100 * seq)
        reports.append(reporting.StepReport(
            step_name=f"step_{seq % 25:02d}", seq=seq, status="failed" if last else "completed",
            started_at=began, completed_at=began + timedelta(milliseconds=80),
            output={"n": seq} if seq % 100 == 0 or last else None, error_message=error_for(steps) if last else None))
    report = reporting.ExecutionReport(
        workflow_id="bench-browser", trigger_source="manual", trigger_payload={"steps": steps}, status="failed",
        started_at=start, completed_at=start + timedelta(milliseconds=100 * steps), steps=reports)
    with ctx.database.writer() as conn:
        return str(reporting.report_execution(conn, cfg, report, engine="bench").execution_id)


def run(ctx: Context) -> None:
    """Median seconds from navigation to the annotated timeline, per size; the annotation must be there."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: install Debian's chromium (browsers are never downloaded)")
    recorded: list[tuple[int, str, float]] = []
    for steps in sizes(ctx):
        began = time.perf_counter()
        recorded.append((steps, record(ctx, steps), time.perf_counter() - began))
    base = serving.start(ctx, "product")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            for steps, execution_id, record_s in recorded:
                _measure(ctx, browser, base, steps, execution_id, record_s)
            steps, execution_id, _ = recorded[0]
            _measure_returning(ctx, browser, f"{base}/executions/{execution_id}", steps)
        finally:
            browser.close()


def _measure(ctx: Context, browser: Any, base: str, steps: int, execution_id: str, record_s: float) -> None:
    target = TARGETS[steps]
    row = ctx.add(Row(f"execution page, {steps:,} steps", "s", target=f"<= {target:g} s", higher_is_better=False,
                      note=f"goto until the failing step's annotation is in the SVG; fresh browser context per "
                           f"run, after {WARMUP_LOADS} untimed loads; recorded in {record_s:.1f} s"))
    if steps <= timeline.WINDOW:
        row.note += f"; all {steps:,} rows drawn"
    else:
        row.note += (f"; the page draws the {timeline.WINDOW}-step window around the first failure (here the "
                     f"last {timeline.WINDOW} steps, the failure being the last) and a minimap of all {steps:,}")
    url = f"{base}/executions/{execution_id}"
    needle = error_for(steps)
    found_all, errors, splits = True, [], []
    # Warm-up loads are not timed: each gunicorn worker pays its own first request (Dash's setup, pools, the
    # first callback's imports), and a just-launched Chromium its own start. With one warm-up the first size
    # measured was the slower of the two however many steps it had.
    for attempt in range(-WARMUP_LOADS + 1, ctx.runs + 1):
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_function(FOUND_JS, arg=needle, timeout=TIMEOUT_MS, polling="raf")
            elapsed = time.perf_counter() - start
            split = page.evaluate(SPLIT_JS)
            found = page.locator("#execution-timeline .annotation-text", has_text=needle).count() > 0
        except Exception as exc:  # a timeout is a wrong result (no annotation), not a crash of the whole measure
            found, elapsed = False, None
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            context.close()
        found_all = found_all and found
        if attempt > 0 and elapsed is not None:
            row.product.append(elapsed)
            splits.append(split)
    ctx.check(f"browser: the {steps:,}-step timeline annotates the failing step with its error",
              found_all and len(row.product) == ctx.runs, "; ".join(errors)[:500])
    ctx.check(f"browser: no page errors on the {steps:,}-step execution page", not errors, "; ".join(errors)[:500])
    if row.product:
        row.met = sorted(row.product)[len(row.product) // 2] <= target
    row.note += _split_note(splits)


def _measure_returning(ctx: Context, browser: Any, url: str, steps: int) -> None:
    """The same page in a browser that has opened the dashboard before: one context, its HTTP cache kept.

    What an on-call engineer's browser looks like on the second alert of the night (the bundles are fingerprinted
    and cached for a year); the cold rows above are a first visit. Reported beside them, not instead of them.
    """
    row = ctx.add(Row(f"execution page, {steps:,} steps, returning browser", "s", target="reported",
                      higher_is_better=False, note="one browser context, one untimed load first, then each run a "
                                                   "new goto with the bundles from its HTTP cache"))
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        for attempt in range(ctx.runs + 1):
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_function(FOUND_JS, arg=error_for(steps), timeout=TIMEOUT_MS, polling="raf")
            if attempt:
                row.product.append(time.perf_counter() - start)
    finally:
        context.close()
    row.met = None


def _split_note(splits: list[dict]) -> str:
    """Medians of the page's own timings: when the timeline callback was sent, its server time and size, the
    plotly.js bundle, and callback answer to annotation (plotly.js evaluation when still pending, then drawing)."""
    def median(key: str) -> float | None:
        values = sorted(s[key] for s in splits if s.get(key) is not None)
        return values[len(values) // 2] if values else None

    parts = {"sent": median("sent"), "server": median("server"), "kb": median("kb"), "plotly": median("plotly_kb"),
             "drawn": median("drawn"), "plotly_at": median("plotly_at")}
    if parts["server"] is None:
        return ""
    plotly = (f"{parts['plotly']:,.0f} KB plotly.js requested at {parts['plotly_at']:,.0f} ms"
              if parts["plotly"] is not None else "plotly.js already loaded")
    return (f"; medians: timeline callback sent at {parts['sent']:,.0f} ms after navigation, {parts['server']:,.0f} ms "
            f"to its first byte ({parts['kb']:,.0f} KB), {plotly}, annotation drawn {parts['drawn']:,.0f} ms after "
            f"the answer")
