"""Every page in headless Chromium against a served app filled by `flowledger demo`; screenshots saved."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.fixtures.serve import ServedApp, start_serve

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    # A short path: the embedded server's unix socket lives under the data dir.
    data_dir = Path(f"/tmp/fl-browser-{os.getpid()}") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_") and k != "DATABASE_URL"}
    env["FLOWLEDGER_DATA_DIR"] = str(data_dir)
    subprocess.run([sys.executable, "-m", "app", "demo", "--executions", "300"], env=env, check=True,
                   capture_output=True, timeout=300)
    app = start_serve(data_dir, env={"FLOWLEDGER_SCHEDULER_ENABLED": "false"})
    yield app
    app.stop()
    shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(served: ServedApp):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, served: ServedApp):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=served.base_url)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def settle(page) -> None:
    """Wait until Dash has no callback in flight (its loading markers are gone)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("!document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=20000)


def a_failed_execution(served: ServedApp) -> dict:
    """A failed demo execution with its first error, read back through the public API (not one a test added)."""
    body = requests.get(served.base_url + "/api/v1/executions", params={"status": "failed", "limit": 20},
                        timeout=10).json()
    return next(item for item in body["items"] if not item["workflow_id"].startswith("browser-"))


@pytest.mark.parametrize("path,name,marker", [
    ("/", "overview", "#overview-hourly"),
    ("/executions", "executions", ".ag-row"),
    ("/events", "events", ".ag-row"),
    ("/dlq", "dlq", "#dlq-groups table"),
    ("/workflows", "workflows", "#workflow-order-sync"),
    ("/dead-letters", "not-found", "#not-found-page a[href='/executions']"),
])
def test_each_page_renders_without_console_errors(page, path, name, marker):
    page.goto(path)
    page.wait_for_selector(marker, timeout=30000)
    settle(page)
    shot(page, name)
    assert page.console_errors == []
    assert not page.query_selector(".fl-error")


def test_a_failed_executions_timeline_shows_a_red_bar_annotated_with_its_error(page, served):
    failed = a_failed_execution(served)
    page.goto(f"/executions/{failed['execution_id']}")
    page.wait_for_selector("#execution-timeline .bars path", timeout=30000)
    settle(page)
    shot(page, "execution-failed")
    red = page.eval_on_selector_all("#execution-timeline .bars path",
                                    "els => els.filter(e => (e.style.fill || '').includes('214, 69, 69')).length")
    assert red > 0
    notes = " ".join(t or "" for t in page.locator("#execution-timeline .annotation-text").all_text_contents())
    assert failed["error_message"][:40] in notes
    assert failed["error_message"][:40] in page.inner_text("#execution-failure")
    assert page.console_errors == []


def test_an_unknown_execution_says_so_and_offers_nothing_to_replay_or_delete(page):
    page.goto(f"/executions/{uuid.uuid4()}")
    page.wait_for_selector("text=Execution not found", timeout=30000)
    settle(page)
    assert not page.is_visible("#execution-replay-button") and not page.is_visible("#execution-delete-box")
    assert page.console_errors == []


def test_a_run_that_fails_on_its_last_step_opens_with_that_row_in_view(page, served):
    start = datetime.now(UTC) - timedelta(hours=1)
    steps = [{"step_name": f"sync_{n:03d}", "seq": n, "status": "failed" if n == 119 else "completed",
              "started_at": (start + timedelta(seconds=n)).isoformat(),
              "completed_at": (start + timedelta(seconds=n, milliseconds=500)).isoformat(),
              "error_message": "invoice 8841 rejected by the ledger" if n == 119 else None} for n in range(120)]
    posted = requests.post(f"{served.base_url}/api/v1/executions", timeout=30, json={
        "workflow_id": "browser-late-failure", "status": "failed", "started_at": start.isoformat(),
        "completed_at": (start + timedelta(seconds=121)).isoformat(), "steps": steps})
    execution_id = posted.json()["executions"][0]["execution_id"]
    page.goto(f"/executions/{execution_id}")
    page.wait_for_selector("#execution-timeline .annotation-text", timeout=30000)
    # the 120th of 120 rows sits about 3,600 px down the figure; the frame (75% of the viewport) scrolls to it
    page.wait_for_function("""() => {
        const frame = document.getElementById('execution-timeline-box').getBoundingClientRect();
        const label = Array.from(document.querySelectorAll('#execution-timeline .ytick text'))
            .find(t => t.textContent.startsWith('119 \u00b7'));
        const row = label && label.getBoundingClientRect();
        return row && row.top >= frame.top && row.bottom <= frame.bottom;
    }""", timeout=15000)
    shot(page, "execution-late-failure")
    assert page.console_errors == []


def test_a_grid_opened_from_a_page_without_one_loads_its_bundle_and_lists_the_runs(page):
    """The overview carries a stand-in for the grid bundle: navigating to the list in the app must still draw it."""
    grid_scripts = []
    page.on("request", lambda r: grid_scripts.append(r.url) if "/dash_ag_grid/dash_ag_grid." in r.url else None)
    page.goto("/")
    page.wait_for_selector("#overview-hourly", timeout=30000)
    settle(page)
    assert grid_scripts == []
    page.click("#nav-executions")
    page.wait_for_selector("#executions-grid .ag-row", timeout=30000)
    settle(page)
    assert len(grid_scripts) == 1 and page.console_errors == []
    page.click("#nav-events")  # the loaded bundle serves the next grid too
    page.wait_for_selector("#events-grid .ag-row", timeout=30000)
    assert len(grid_scripts) == 1 and page.console_errors == []


def test_clicking_a_failed_execution_in_the_grid_opens_its_timeline(page):
    page.goto("/executions?status=failed")
    page.wait_for_selector(".ag-row .fl-cell-status--failed", timeout=30000)
    shot(page, "executions-failed")
    row = page.locator(".ag-row").first
    execution_id = row.get_attribute("row-id")
    row.locator("[col-id='workflow_id']").click()
    page.wait_for_url(re.compile(f"/executions/{execution_id}"), timeout=15000)
    page.wait_for_selector("#execution-failure", timeout=30000)
    settle(page)
    assert page.console_errors == []


def test_a_payload_field_filter_finds_the_execution_that_holds_it(page, served):
    failed = a_failed_execution(served)
    detail = requests.get(f"{served.base_url}/api/v1/executions/{failed['execution_id']}",
                          params={"payloads": "false"}, timeout=10).json()
    customer = detail["trigger_payload"]["customer"]["id"]
    page.goto("/executions")
    page.wait_for_selector(".ag-row", timeout=30000)
    page.fill("#executions-payload", f"customer.id = {customer}")
    page.click("#executions-apply")
    page.wait_for_url(re.compile("payload=customer.id"), timeout=15000)
    page.wait_for_selector(f".ag-row[row-id='{failed['execution_id']}']", timeout=30000)
    settle(page)
    shot(page, "executions-payload-filter")
    assert page.locator(".ag-row").count() >= 1
    assert "1 executions" in page.inner_text("#executions-count") or page.locator(".ag-row").count() <= 3


def test_a_bulk_replay_dry_run_shows_its_count(page):
    page.goto("/events?status=dead_lettered")
    page.wait_for_function("/[0-9]+ events/.test((document.querySelector('#events-count') || {}).innerText)",
                           timeout=30000)
    rows = int(page.inner_text("#events-count").split()[0].replace(",", ""))
    page.click("#events-bulk summary")
    page.click("#events-dry-run")
    page.wait_for_selector("#events-dry-run-count", timeout=30000)
    settle(page)
    shot(page, "events-bulk-dry-run")
    assert f"{rows} events would be replayed" in page.inner_text("#events-dry-run-count")
    assert page.console_errors == []


def test_an_event_page_shows_its_body_hash_and_executions(page):
    page.goto("/events?status=dead_lettered")
    page.wait_for_selector(".ag-row", timeout=30000)
    page.locator(".ag-row").first.locator("[col-id='source_system']").click()
    page.wait_for_selector("#event-detail table", timeout=30000)
    settle(page)
    shot(page, "event")
    text = page.inner_text("#event-detail")
    assert "SHA-256" in text and "Body as received" in text and "dead lettered" in text
    assert page.console_errors == []


def test_the_header_says_the_ledger_is_in_open_mode_until_a_user_exists(page):
    page.goto("/workflows")
    page.wait_for_function("((document.querySelector('#nav-user-name') || {}).innerText || '').length > 0",
                           timeout=30000)
    assert page.inner_text("#nav-user-name") == "open mode: no users yet"
    assert not page.is_visible("#nav-signout")


def test_replaying_a_dead_letter_group_from_the_dashboard_queues_that_replay(page, served):
    """The dashboard's buttons call the API through assets/flowledger-api.js (JSON both ways, the CSRF header);
    it queues a replay of demo events."""
    page.goto("/dlq")
    page.wait_for_selector("#dlq-groups table", timeout=30000)
    settle(page)
    page.locator("#dlq-groups button", has_text="Replay").first.click()
    page.wait_for_function(
        "/queued as replay [0-9a-f-]{36}/.test(document.querySelector('#dlq-groups').innerText)", timeout=30000)
    shot(page, "dlq-replay-queued")
    replay_id = re.search(r"queued as replay ([0-9a-f-]{36})", page.inner_text("#dlq-groups")).group(1)
    queued = requests.get(f"{served.base_url}/api/v1/replays/{replay_id}", timeout=10)
    assert queued.status_code == 200 and queued.json()["total"] > 0
    assert page.console_errors == []


def test_a_bulk_replay_confirmed_from_the_events_page_is_queued_and_shows_progress(page):
    """Dry run, a reason, then the real replay: it used to be refused (422, the selection's fields were also
    sent at the top level of the request) and the page said nothing useful."""
    page.goto("/events?status=dead_lettered")
    page.wait_for_selector(".ag-row", timeout=30000)
    page.click("#events-bulk summary")
    page.click("#events-dry-run")
    page.wait_for_selector("#events-dry-run-count", timeout=30000)
    page.fill("#events-replay-reason", "payment provider back up")
    page.click("#events-replay-confirm")
    page.wait_for_function(
        "/replay [0-9a-f-]{36}: /.test((document.querySelector('#events-replay-progress') || {}).innerText)",
        timeout=30000)
    shot(page, "events-bulk-replay-queued")
    assert "Replay was not queued" not in page.inner_text("#events-replay-progress")
    assert page.console_errors == []


def test_replaying_one_event_from_its_page_starts_a_new_execution(page, served):
    event = requests.get(f"{served.base_url}/api/v1/events", params={"processing_status": "dead_lettered",
                                                                     "limit": 1}, timeout=10).json()["items"][0]
    page.goto(f"/events/{event['event_id']}")
    page.wait_for_selector("#event-detail table", timeout=30000)
    settle(page)
    page.click("#event-replay-button")
    page.wait_for_function("/Replay started: 1 new execution/.test(document.querySelector('#event-replay-result')"
                           ".innerText)", timeout=30000)
    started = page.inner_text("#event-replay-result").split()[-1]
    detail = requests.get(f"{served.base_url}/api/v1/executions/{started}", timeout=10).json()
    assert detail["event_id"] == event["event_id"] and detail["replay_of"]
    assert page.console_errors == []


def test_deleting_an_execution_needs_a_reason_and_says_why_the_server_refused(page, served):
    failed = a_failed_execution(served)
    page.goto(f"/executions/{failed['execution_id']}")
    page.wait_for_selector("#execution-timeline", timeout=30000)
    settle(page)
    page.click("#execution-delete-box summary")
    page.click("#execution-delete-button")
    page.wait_for_function("document.querySelector('#execution-delete-result').innerText.length > 0", timeout=10000)
    assert page.inner_text("#execution-delete-result") == "A reason is required."
    page.fill("#execution-delete-reason", "test data")
    page.click("#execution-delete-button")
    page.wait_for_function("/Refused/.test(document.querySelector('#execution-delete-result').innerText)",
                           timeout=30000)
    # open mode has no admin holding executions.force-delete: the problem's detail is shown, nothing is deleted
    assert "Refused (403): force-delete needs" in page.inner_text("#execution-delete-result")
    assert requests.get(f"{served.base_url}/api/v1/executions/{failed['execution_id']}", timeout=10).ok


def test_a_signed_in_operator_uses_the_dashboard_with_the_sessions_csrf_token(browser, served):
    """Last in this module: creating the first user ends open mode. Every Dash update and every button is then
    a cookie-session POST that the server accepts only with the session's CSRF token echoed back."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_") and k != "DATABASE_URL"}
    env["FLOWLEDGER_DATA_DIR"] = str(Path(f"/tmp/fl-browser-{os.getpid()}") / "data")
    subprocess.run([sys.executable, "-m", "app", "user", "create", "ops", "--role", "operator", "--password-stdin"],
                   input="correct horse battery\n", env=env, check=True, capture_output=True, text=True, timeout=120)
    deadline = time.monotonic() + 30  # workers re-check open mode every 2 s
    while requests.get(f"{served.base_url}/api/v1/executions", timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "open mode never ended"
        time.sleep(0.2)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=served.base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/dlq")
        page.wait_for_selector("input[name=username]", timeout=30000)  # sent to sign in first
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.goto("/dlq")
        page.wait_for_selector("#dlq-groups table", timeout=30000)  # a Dash update: POST with the CSRF header
        settle(page)
        page.locator("#dlq-groups button", has_text="Replay").first.click()
        page.wait_for_function(
            "/queued as replay [0-9a-f-]{36}/.test(document.querySelector('#dlq-groups').innerText)", timeout=30000)
        shot(page, "dlq-replay-signed-in")
        assert page.inner_text("#nav-user-name") == "ops · operator"
        page.click("#nav-signout")
        page.wait_for_selector("input[name=username]", timeout=30000)  # signed out: back to the sign-in form
        page.goto("/dlq")
        page.wait_for_selector("input[name=username]", timeout=30000)
        assert errors == []
    finally:
        context.close()
