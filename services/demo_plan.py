"""Plans the demo history: which workflow ran when, each step attempt's timing and outcome (no I/O)."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services import fake_data
from services.alerting import AlertConfig


@dataclass(frozen=True)
class StepSpec:
    """One step of a demo workflow: its type, typical duration and how often it breaks."""

    name: str
    type: str = "action"
    median_ms: int = 400
    fail_weight: float = 1.0


@dataclass(frozen=True)
class WorkflowSpec:
    """A demo workflow and how it is triggered."""

    workflow_id: str
    description: str
    trigger_source: str
    steps: tuple[StepSpec, ...]
    share: float = 0.0
    source_system: str | None = None
    event_type: str | None = None
    retention_days: int = 90
    retain_on_failure: bool = False
    legal_hold: bool = False


WORKFLOWS: tuple[WorkflowSpec, ...] = (
    WorkflowSpec(
        "crm-deal-won-invoice", "CRM deal.won → create invoice → email it to the customer", "webhook",
        (StepSpec("validate_deal", "transform", 25, 0.2), StepSpec("lookup_crm_contact", "action", 320, 1),
         StepSpec("create_invoice", "action", 900, 2.5), StepSpec("wait_for_invoice_pdf", "wait", 4000, 0),
         StepSpec("send_invoice_email", "action", 650, 1.5), StepSpec("update_crm_deal", "action", 380, 1)),
        share=0.45, source_system="crm", event_type="deal.won", retention_days=365, retain_on_failure=True),
    WorkflowSpec(
        "order-sync", "Shop order.created → reserve stock → charge → sync to ERP → confirm", "webhook",
        (StepSpec("fetch_order", "action", 210, 0.5), StepSpec("reserve_inventory", "action", 480, 1.5),
         StepSpec("charge_payment", "action", 1300, 2.5), StepSpec("sync_to_erp", "action", 850, 1.5),
         StepSpec("notify_customer_email", "action", 500, 1)),
        share=0.55, source_system="shop", event_type="order.created", retention_days=180),
    WorkflowSpec(
        "nightly-revenue-report", "Nightly revenue report: query warehouse → build → upload → email", "schedule",
        (StepSpec("query_warehouse", "action", 42000, 1), StepSpec("build_report", "transform", 6500, 0.3),
         StepSpec("upload_report", "action", 2400, 1), StepSpec("email_report", "action", 700, 0.5)),
        retention_days=730, legal_hold=True),
)
BACKFILL = WorkflowSpec("customer-backfill", "Manual backfill of CRM contacts into billing, one step per batch",
                        "manual", (), retention_days=30)
SPIKE_ERROR = "HTTP 503 from pay.example.com: Service Unavailable"
BASE_FAILURE = 0.025
RETRY_RATE = 0.06
SLOW_RATE = 0.02
MAX_ATTEMPTS = 3


@dataclass
class PlannedStep:
    """One attempt of one step, as the demo engine will report it."""

    seq: int
    spec: StepSpec
    attempt: int
    status: str
    started_at: datetime
    completed_at: datetime
    wait_ms: int | None = None
    error: str | None = None


@dataclass
class PlannedRun:
    """One execution: its workflow, start, steps and final status."""

    workflow: WorkflowSpec
    started_at: datetime
    steps: list[PlannedStep]
    status: str
    completed_at: datetime
    error: str | None = None
    failed_step: str | None = None
    in_spike: bool = False


def plan(rng: random.Random, *, executions: int, days: int, now: datetime) -> tuple[list[PlannedRun], datetime]:
    """All demo runs oldest first, and the start of the hour whose failure rate spikes above 5%."""
    spike_hour = (now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    runs: list[PlannedRun] = []
    nightly = WORKFLOWS[2]
    for day in range(days + 1):
        at = (now - timedelta(days=day)).replace(hour=2, minute=0, second=0, microsecond=0)
        if now - timedelta(days=days) <= at < now - timedelta(minutes=5):
            runs.append(run(rng, nightly, at + timedelta(seconds=rng.randint(0, 90))))
    # Enough runs to page (alerting counts an hour only from AlertConfig.min_executions finished runs on).
    spike_runs = max(AlertConfig.min_executions + 4, executions // 100)
    regular = max(executions - len(runs) - spike_runs, 0)
    webhooks = WORKFLOWS[:2]
    for _ in range(regular):
        workflow = rng.choices(webhooks, weights=[w.share for w in webhooks])[0]
        runs.append(run(rng, workflow, _business_time(rng, now, days, spike_hour)))
    for _ in range(spike_runs):
        at = spike_hour + timedelta(seconds=rng.randint(0, 3300))  # and ending inside the hour too
        runs.append(run(rng, WORKFLOWS[1], at, spike=True))
    if executions >= 1000:
        runs.append(backfill(rng, now - timedelta(days=2, hours=3), steps=500))
    return sorted(runs, key=lambda r: r.started_at), spike_hour


def _business_time(rng: random.Random, now: datetime, days: int, avoid: datetime) -> datetime:
    """A start time in the window, busier on weekday working hours, outside the spike hour."""
    while True:
        at = now - timedelta(seconds=rng.uniform(600, days * 86400))
        weight = (1.0 if 7 <= at.hour <= 19 else 0.25) * (1.0 if at.weekday() < 5 else 0.4)
        if rng.random() < weight and not avoid <= at < avoid + timedelta(hours=1):
            return at


def run(rng: random.Random, workflow: WorkflowSpec, started_at: datetime, *, spike: bool = False) -> PlannedRun:
    """Plan one execution; a spike run fails at charge_payment a third of the time."""
    failing = None
    if spike and rng.random() < 0.35:
        failing = "charge_payment"
    elif rng.random() < BASE_FAILURE:
        failing = rng.choices(workflow.steps, weights=[s.fail_weight for s in workflow.steps])[0].name
    at = started_at + timedelta(milliseconds=rng.randint(5, 60))
    steps: list[PlannedStep] = []
    status, error = "completed", None
    for seq, spec in enumerate(workflow.steps, start=1):
        if status != "completed":
            steps.append(PlannedStep(seq, spec, 1, "skipped", at, at))
            continue
        attempts, at = _attempts(rng, seq, spec, at, fails=spec.name == failing, spike=spike)
        steps.extend(attempts)
        if attempts[-1].status != "completed":
            status, error = ("timed_out" if attempts[-1].status == "timed_out" else "failed"), attempts[-1].error
    return PlannedRun(workflow, started_at, steps, status, at + timedelta(milliseconds=rng.randint(2, 30)), error,
                      failing if status != "completed" else None, spike)


def _attempts(rng: random.Random, seq: int, spec: StepSpec, at: datetime, *, fails: bool,
              spike: bool) -> tuple[list[PlannedStep], datetime]:
    """The attempts of one step: retried once on a transient error, or failing every attempt."""
    retries = 0 if spec.type != "action" else (MAX_ATTEMPTS - 1 if fails else int(rng.random() < RETRY_RATE))
    result, wait = [], None
    timeout = fails and not spike and rng.random() < 0.3
    error = SPIKE_ERROR if spike else fake_data.error_message(rng, step_name=spec.name)
    transient = rng.choice(("HTTP 429 rate limit exceeded, retry after 2s", SPIKE_ERROR))
    for attempt in range(1, retries + 2):
        final = attempt == retries + 1
        ok = not (fails or not final)
        timed_out = timeout and not ok
        duration = 30000 if timed_out else _duration(rng, spec)
        start = at + timedelta(milliseconds=wait or 0)
        end = start + timedelta(milliseconds=duration)
        status = "completed" if ok else ("timed_out" if timed_out else "failed")
        message = None if ok else (f"timeout after 30s calling {spec.name}" if timed_out
                                   else error if fails else transient)
        result.append(PlannedStep(seq, spec, attempt, status, start, end, wait, message))
        at = end
        wait = int(1000 * 2 ** attempt * rng.uniform(0.8, 1.2))
    return result, at


def _duration(rng: random.Random, spec: StepSpec) -> int:
    """A log-normal duration around the step's median, now and then much slower."""
    value = spec.median_ms * math.exp(rng.gauss(0, 0.35))
    if rng.random() < SLOW_RATE:
        value *= rng.uniform(3, 6)
    return max(1, int(value))


def backfill(rng: random.Random, started_at: datetime, *, steps: int) -> PlannedRun:
    """A long manual run with one step per batch, for reading large timelines."""
    at, planned = started_at, []
    for seq in range(1, steps + 1):
        spec = StepSpec(f"sync_contacts_batch_{seq:03d}", "action", 180)
        duration = _duration(rng, spec)
        planned.append(PlannedStep(seq, spec, 1, "completed", at, at + timedelta(milliseconds=duration)))
        at += timedelta(milliseconds=duration + rng.randint(1, 20))
    return PlannedRun(BACKFILL, started_at, planned, "completed", at)


def trigger_payload(rng: random.Random, workflow: WorkflowSpec, started_at: datetime) -> dict[str, Any]:
    """The trigger body: customer, order and invoice at the top level so `customer.id = C-…` finds it."""
    if workflow.trigger_source == "schedule":
        return {"report": "daily-revenue", "date": (started_at - timedelta(days=1)).date().isoformat()}
    if workflow.trigger_source == "manual":
        return {"requested_by": "ops@example.com", "batches": 500}
    body = fake_data.trigger_payload(rng, kind=workflow.event_type or "order.created")
    data = body.pop("data")
    body.update(customer=data["customer"], order=data["order"], invoice=data["invoice"])
    if workflow.event_type == "deal.won":
        body["deal"] = {"id": f"D-{rng.randint(100000, 999999)}", "stage": "won",
                        "amount": data["order"]["amounts"]["total"], "currency": data["order"]["currency"]}
    return body
