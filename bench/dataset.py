"""The reusable benchmark dataset: N executions x 10 steps, loaded by COPY into the real tables.

Why the loader bypasses the HTTP path: the dataset exists to measure reads (timelines, searches,
rollups) at 1M/10M scale, and ingestion is measured on its own against its own baseline. Loading
10,000,000 steps through POST /api/v1/executions would take hours on two cores; COPY through
psycopg's `cursor.copy`, as the writer role (so grants and the execution_state triggers apply
exactly as in production), takes minutes. Payloads are still stored the way the product stores
them: masked-free realistic JSON from services.fake_data, compressed by services.codec with a
per-workflow dictionary recorded in payload_dictionaries, so services.payloads.load reads them
back. To keep generation fast a pool of distinct payloads per (workflow, step) is generated and
compressed once and reused; trigger payloads get a unique customer id and order number each.
Not loaded: audit events and log lines (no measure reads them in bulk).

Loading is resumable: chunks of CHUNK executions commit atomically and are generated from a
seed per chunk, so a rerun counts the bench executions present and continues with the next chunk.
"""
from __future__ import annotations

import json
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services import codec, fake_data
from services.text_extraction import search_text, step_text

CHUNK = 500
# Bumped whenever generated rows change: a reusable --data-dir loaded by another version is refused.
DATASET_VERSION = 2
STEP_NAMES = ("fetch_order", "lookup_crm_contact", "reserve_inventory", "charge_payment", "create_invoice",
              "sync_to_erp", "send_invoice_email", "update_crm_deal", "call_partner_api", "notify_customer_email")
FAILURE_RATE = 0.05
RETRIES = 3


@dataclass
class Pool:
    """Pre-compressed payloads for one workflow."""

    dict_id: int | None
    steps: dict[str, list[tuple[bytes, bytes, str, str]]]  # raw, blob, sha256, search text
    dictionary: Any = None  # the zstd dictionary of dict_id, for payloads made per execution


def workflows(ctx: Any) -> list[str]:
    """The bench workflow ids for this scale."""
    return [f"bench-wf-{n:02d}" for n in range(4 if ctx.quick else 8)]


def customer_id(index: int) -> str:
    """The customer id the trigger payload of execution `index` carries (for GIN look-ups)."""
    return f"BC-{index:08d}"


def refs(index: int) -> dict[str, str]:
    """The business identifiers of execution `index`, carried in every step input as a real workflow's
    context would be: what an investigator pastes into free-text search."""
    return {"order_number": f"BO-{index:08d}", "customer_id": customer_id(index),
            "customer_email": f"buyer.{index:08d}@shop-mail.example", "invoice_number": f"BINV-2026-{index:08d}"}


def ensure(ctx: Any) -> None:
    """Load the missing chunks of the dataset (all of it the first time)."""
    wanted = ctx.executions
    with ctx.database.reader() as conn:
        have = conn.execute(sa.text(
            "SELECT count(*) FROM execution_state WHERE workflow_id LIKE 'bench-wf-%'")).scalar_one()
    _check_version(ctx, have)
    ctx.extras["dataset"] = {"executions": wanted, "already_loaded": have}
    if have >= wanted:
        return
    pools = {wf: _pool(ctx, wf, variants=12 if ctx.quick else 40) for wf in workflows(ctx)}
    start, loaded, shown = time.perf_counter(), 0, 0.0
    first_chunk = have // CHUNK
    last_chunk = (wanted + CHUNK - 1) // CHUNK - 1
    deferred = _drop_text_indexes(ctx) if not ctx.quick else []
    try:
        for chunk in range(first_chunk, last_chunk + 1):
            count = min(CHUNK, wanted - chunk * CHUNK)
            _load_chunk(ctx, pools, chunk, count)
            loaded += count
            # Progress at least every 10 s: a long load must not look like a hang.
            if chunk == last_chunk or time.perf_counter() - shown > 10:
                shown = time.perf_counter()
                rate = loaded / (time.perf_counter() - start)
                print(f"   loaded {chunk * CHUNK + count:,}/{wanted:,} executions ({rate:,.0f}/s)",
                      file=sys.stderr, flush=True)
    finally:
        _create_indexes(ctx, deferred)
    ctx.extras["dataset"]["load_seconds"] = round(time.perf_counter() - start, 1)
    with ctx.database.admin() as conn:
        conn.exec_driver_sql("ANALYZE executions, execution_state, execution_transitions, steps, payloads")


def _check_version(ctx: Any, have: int) -> None:
    """Record the generator version in a new dataset; refuse to extend or reuse one made by another."""
    with ctx.database.admin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_dataset (version int NOT NULL)")
        version = conn.execute(sa.text("SELECT max(version) FROM bench_dataset")).scalar()
        if have == 0 and version != DATASET_VERSION:
            conn.exec_driver_sql("DELETE FROM bench_dataset")
            conn.execute(sa.text("INSERT INTO bench_dataset VALUES (:v)"), {"v": DATASET_VERSION})
            return
    if have and version != DATASET_VERSION:
        raise SystemExit(f"bench: the dataset in --data-dir was generated by dataset version {version or 1}, this "
                         f"bench generates version {DATASET_VERSION} (step inputs now carry each execution's order "
                         "number, email and invoice). Delete the directory or pass another --data-dir.")


# The free-text indexes over step text cost most of a bulk load when maintained row by row (GIN
# pending-list flushes stall the COPY for a minute at a time); building them once after the load is
# what PostgreSQL's documentation recommends for bulk loads. The schema ends up exactly as migrated.
TEXT_INDEXES = ("steps_search_fts", "steps_search_trgm")


def _drop_text_indexes(ctx: Any) -> list[str]:
    with ctx.database.admin() as conn:
        rows = conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'steps' "
                                    "AND indexname = ANY(:names)"), {"names": list(TEXT_INDEXES)}).all()
        owner = conn.execute(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'steps'")).scalar_one()
        conn.exec_driver_sql(f'SET ROLE "{owner}"')
        for name, _ in rows:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql("RESET ROLE")
    # pg_indexes shows a partitioned index as "ON ONLY steps": replayed as is, it would never reach the partitions.
    return [definition.replace(" ON ONLY ", " ON ", 1) for _, definition in rows]


def _create_indexes(ctx: Any, definitions: list[str]) -> None:
    if not definitions:
        return
    print(f"   building {len(definitions)} search indexes after the load", file=sys.stderr, flush=True)
    with ctx.database.admin() as conn:
        owner = conn.execute(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'steps'")).scalar_one()
        conn.exec_driver_sql("SET maintenance_work_mem = '2GB'")
        conn.exec_driver_sql(f'SET ROLE "{owner}"')
        for definition in definitions:
            conn.exec_driver_sql(definition)
        conn.exec_driver_sql("RESET ROLE")


def _pool(ctx: Any, workflow_id: str, *, variants: int) -> Pool:
    rng = random.Random(workflow_id)
    raw = {name: [codec.canonical_json(fake_data.step_payload(rng, step_name=name, size_hint=rng.randint(1024, 8192)))
                  for _ in range(variants)] for name in STEP_NAMES}
    samples = [p for items in raw.values() for p in items]
    dict_id, dictionary = None, None
    with ctx.database.writer() as conn:
        dict_id = conn.execute(sa.text(
            "SELECT max(dict_id) FROM payload_dictionaries WHERE workflow_id = :w"), {"w": workflow_id}).scalar()
        if dict_id is None:
            data = codec.train_dictionary(samples)
            dict_id = conn.execute(sa.text(
                "INSERT INTO payload_dictionaries (workflow_id, sample_count, data) VALUES (:w, :n, :d) "
                "RETURNING dict_id"), {"w": workflow_id, "n": len(samples), "d": data}).scalar_one()
        data = conn.execute(sa.text("SELECT data FROM payload_dictionaries WHERE dict_id = :d"),
                            {"d": dict_id}).scalar_one()
        dictionary = codec.load_dictionary(bytes(data))
    steps = {name: [(p, codec.encode(p, dictionary=dictionary), codec.sha256_hex(p), search_text(json.loads(p)))
                    for p in items] for name, items in raw.items()}
    return Pool(dict_id, steps, dictionary)


def _load_chunk(ctx: Any, pools: dict[str, Pool], chunk: int, count: int) -> None:
    rng = random.Random(f"chunk-{chunk}")
    names = list(pools)
    end = datetime.now(UTC).replace(microsecond=0) if chunk == 0 else None
    span = timedelta(days=30)
    origin = ctx.extras.setdefault("dataset_origin", end or datetime.now(UTC)) - span
    rows: dict[str, list[tuple]] = {"executions": [], "execution_transitions": [], "steps": [], "payloads": []}
    templates = [fake_data.trigger_payload(random.Random(f"t{n}")) for n in range(20)]
    for offset in range(count):
        index = chunk * CHUNK + offset
        _execution(rng, rows, index, names[index % len(names)], pools, templates,
                   origin + span * (index / max(1, ctx.executions)))
    copy_rows(ctx, rows)


def copy_rows(ctx: Any, rows: dict[str, list[tuple]]) -> None:
    """COPY generated rows into the real tables as the writer, in one transaction."""
    raw = ctx.database.engine("writer").raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            for table, cols in COLUMNS.items():
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows[table]:
                        copy.write_row(row)
        raw.driver_connection.commit()
    finally:
        raw.close()


COLUMNS = {
    "executions": ("execution_id", "created_at", "workflow_id", "trigger_source", "trigger_payload", "trace_id",
                   "root_span_id", "engine", "started_at"),
    "execution_transitions": ("execution_id", "seq", "status", "at", "error_message", "failed_step"),
    "steps": ("step_id", "created_at", "execution_id", "seq", "step_name", "step_type", "attempt", "status",
              "started_at", "completed_at", "duration_ms", "input_payload_id", "output_payload_id",
              "error_message", "span_id", "parent_span_id", "search_text"),
    "payloads": ("payload_id", "created_at", "execution_id", "step_id", "kind", "codec", "dict_id", "size_bytes",
                 "stored_bytes", "sha256", "data"),
}


def _execution(rng: random.Random, rows: dict[str, list[tuple]], index: int, workflow_id: str,
               pools: dict[str, Pool], templates: list[dict], started: datetime) -> None:
    execution_id = uuid.UUID(bytes=rng.randbytes(16), version=4)
    trigger = templates[index % len(templates)]
    trigger["data"]["customer"]["id"] = customer_id(index)
    trigger["data"]["order"]["number"] = f"BO-{index:08d}"
    root = rng.randbytes(8).hex()
    rows["executions"].append((execution_id, started, workflow_id, "webhook", json.dumps(trigger),
                               rng.randbytes(16).hex(), root, "bench", started))
    failing = rng.randrange(len(STEP_NAMES)) if rng.random() < FAILURE_RATE else None
    context = _context(index)
    pool, moment, parent, error = pools[workflow_id], started, root, None
    for seq, name in enumerate(STEP_NAMES):
        for attempt in range(1, (RETRIES if seq == failing else 1) + 1):
            step_id, span = uuid.UUID(bytes=rng.randbytes(16), version=4), rng.randbytes(8).hex()
            duration = rng.randint(20, 1500)
            status = "failed" if seq == failing else "completed"
            error = fake_data.error_message(rng, step_name=name) if status == "failed" else None
            ids = []
            for kind, (raw, blob, sha, text) in (("input", _with_refs(pool, rng.choice(pool.steps[name]), context)),
                                                 ("output", rng.choice(pool.steps[name]))):
                payload_id = uuid.UUID(bytes=rng.randbytes(16), version=4)
                ids.append((payload_id, text))
                rows["payloads"].append((payload_id, started, execution_id, step_id, kind, "zstd-dict",
                                         pool.dict_id, len(raw), len(blob), sha, blob))
            rows["steps"].append((step_id, started, execution_id, seq, name, "action", attempt, status, moment,
                                  moment + timedelta(milliseconds=duration), duration, ids[0][0], ids[1][0], error,
                                  span, parent, step_text(t for _, t in ids)))
            moment += timedelta(milliseconds=duration)
            parent = span
        if seq == failing:
            break
    final = "failed" if failing is not None else "completed"
    rows["execution_transitions"].append((execution_id, 1, "running", started, None, None))
    rows["execution_transitions"].append((execution_id, 2, final, moment, error,
                                          STEP_NAMES[failing] if failing is not None else None))


def _context(index: int) -> tuple[bytes, str]:
    """The refs object as JSON bytes and as extracted search text."""
    value = refs(index)
    return json.dumps(value, separators=(",", ":")).encode(), search_text(value)


def _with_refs(pool: Pool, item: tuple[bytes, bytes, str, str], context: tuple[bytes, str]
               ) -> tuple[bytes, bytes, str, str]:
    """A pooled step payload with this execution's refs first: compressed and hashed per execution."""
    raw, _, _, text = item
    refs_json, refs_text = context
    payload = b'{"refs":' + refs_json + b"," + raw[1:]
    return payload, codec.encode(payload, dictionary=pool.dictionary), codec.sha256_hex(payload), \
        refs_text + "\n" + text
