"""Tamper evidence: hourly seals (Merkle roots over every ledger row, chained). Verification: seal_verify."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import zstandard
from sqlalchemy import Connection

from services import merkle
from services.objectstore import ObjectStore

log = logging.getLogger(__name__)
PERIOD = timedelta(hours=1)
# An hour is sealed this long after it ends: rows of transactions still committing at the hour's end get in.
GRACE = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PERIODS_PER_RUN = 48
LOCK_KEY = 0x5EA15EA1


@dataclass(frozen=True)
class SealedTable:
    """How one ledger table is keyed, placed in a period, and turned into canonical bytes."""

    name: str
    key: str
    at: str
    match: str
    # Columns left out of the canonical bytes because the product legitimately rewrites them:
    # payload bytes move to the object store when tiered (their sha256 stays sealed and verify
    # checks inline bytes against it), and steps.search_text is a derived search column.
    omit: tuple[str, ...] = ()


TABLES = (
    SealedTable("events", "event_id::text", "created_at", "event_id = CAST(:k AS uuid)"),
    SealedTable("event_status_history", "id::text", "at", "id = CAST(:k AS bigint)"),
    SealedTable("executions", "execution_id::text", "created_at", "execution_id = CAST(:k AS uuid)"),
    SealedTable("execution_transitions", "execution_id::text || ':' || seq", "recorded_at",
                "execution_id = CAST(split_part(:k, ':', 1) AS uuid) AND seq = CAST(split_part(:k, ':', 2) AS int)"),
    SealedTable("steps", "step_id::text", "created_at", "step_id = CAST(:k AS uuid)",
                omit=("search_text",)),
    SealedTable("payloads", "payload_id::text", "created_at", "payload_id = CAST(:k AS uuid)", omit=("data", "uri")),
    SealedTable("execution_audit_events", "id::text", '"timestamp"', "id = CAST(:k AS bigint)"),
    SealedTable("admin_audit_log", "id::text", "at", "id = CAST(:k AS bigint)"),
)
BY_NAME = {t.name: t for t in TABLES}


def prepare(conn: Connection) -> None:
    # Canonical bytes come from to_jsonb(), whose timestamp and bytea text depend on these settings.
    conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
    conn.execute(sa.text("SET LOCAL bytea_output = 'hex'"))


def period_of(at: datetime) -> datetime:
    """The start of the (hourly) period that contains at."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _leaf_sql(t: SealedTable, where: str) -> sa.TextClause:
    doc = "to_jsonb(t)" + "".join(f" - '{c}'" for c in t.omit)
    return sa.text(f"SELECT {t.key} AS k, sha256('\\x00'::bytea || convert_to('{t.name}' || E'\\n' || "
                   f"({doc})::text, 'UTF8')) FROM {t.name} t WHERE {where}")


def leaves_for(conn: Connection, start: datetime, end: datetime) -> list[tuple[str, str, bytes]]:
    """(table, key, leaf hash) of every ledger row in [start, end), sorted; computed inside PostgreSQL."""
    prepare(conn)
    out: list[tuple[str, str, bytes]] = []
    for t in TABLES:
        rows = conn.execute(_leaf_sql(t, f"{t.at} >= :start AND {t.at} < :end"), {"start": start, "end": end}).all()
        out.extend((t.name, key, bytes(digest)) for key, digest in rows)
    out.sort(key=lambda leaf: (leaf[0], leaf[1]))
    return out


def current_leaf(conn: Connection, table: str, key: str) -> bytes | None:
    """The leaf hash one row has now, or None when the row is gone."""
    prepare(conn)
    t = BY_NAME[table]
    row = conn.execute(_leaf_sql(t, t.match), {"k": key}).first()
    return bytes(row[1]) if row else None


def _pack(leaves: list[tuple[str, str, bytes]]) -> bytes:
    text = "".join(f"{table}\t{key}\t{digest.hex()}\n" for table, key, digest in leaves)
    return zstandard.ZstdCompressor(level=9).compress(text.encode())


def unpack(blob: bytes) -> list[tuple[str, str, bytes]]:
    text = zstandard.ZstdDecompressor().decompress(bytes(blob)).decode()
    out = []
    for line in text.splitlines():
        table, key, digest = line.split("\t")
        out.append((table, key, bytes.fromhex(digest)))
    return out


def last_seal(conn: Connection) -> sa.Row | None:
    """The newest seal's period_end and root (how far the chain reaches), None before the first seal."""
    return conn.execute(sa.text("SELECT period_end, root FROM seals ORDER BY period_end DESC LIMIT 1")).first()


def seal_closed_periods(conn: Connection, store: ObjectStore | None, *, now: datetime,
                        grace: timedelta = GRACE, lock_days: int = 0,
                        max_periods: int = MAX_PERIODS_PER_RUN) -> list[int]:
    """Seal every closed hour not sealed yet, oldest first (also empty hours); returns the new seal ids."""
    conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    prepare(conn)
    if not conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar_one():
        return []  # another process is sealing right now
    last = last_seal(conn)
    closed_end = period_of(now - grace)
    start = last[0] if last else _first_period(conn, closed_end)
    prev_root = last[1] if last else None
    created: list[int] = []
    while start < closed_end and len(created) < max_periods:
        seal_id, prev_root = _seal_one(conn, store, start=start, end=start + PERIOD, prev_root=prev_root, now=now,
                                       lock_days=lock_days)
        created.append(seal_id)
        start += PERIOD
    return created


def _first_period(conn: Connection, closed_end: datetime) -> datetime:
    firsts = [conn.execute(sa.text(f"SELECT min({t.at}) FROM {t.name}")).scalar() for t in TABLES]
    firsts = [f for f in firsts if f is not None]
    return min(period_of(min(firsts)), closed_end) if firsts else closed_end


def _seal_one(conn: Connection, store: ObjectStore | None, *, start: datetime, end: datetime,
              prev_root: str | None, now: datetime, lock_days: int) -> tuple[int, str]:
    leaves = leaves_for(conn, start, end)
    mroot = merkle.root([digest for _, _, digest in leaves])
    root = merkle.chain(prev_root, mroot, start, end)
    counts: dict[str, int] = {}
    for table, _, _ in leaves:
        counts[table] = counts.get(table, 0) + 1
    blob = _pack(leaves)
    doc = {"period_start": start.isoformat(), "period_end": end.isoformat(), "root": root, "prev_root": prev_root,
           "merkle_root": mroot, "row_count": len(leaves), "counts": counts, "leaves_sha256":
           hashlib.sha256(blob).hexdigest(), "sealed_at": now.isoformat()}
    uri = _publish(store, start, doc, blob, now=now, lock_days=lock_days) if store is not None else None
    seal_id = conn.execute(sa.text(
        "INSERT INTO seals (period_start, period_end, created_at, root, prev_root, merkle_root, row_count, counts, "
        "uri) "
        "VALUES (:s, :e, :now, :root, :prev, :m, :n, CAST(:c AS jsonb), :uri) RETURNING seal_id"),
        {"s": start, "e": end, "now": now, "root": root, "prev": prev_root, "m": mroot, "n": len(leaves),
         "c": json.dumps(counts), "uri": uri}).scalar_one()
    conn.execute(sa.text("INSERT INTO seal_leaves (seal_id, leaves) VALUES (:id, :b)"), {"id": seal_id, "b": blob})
    return seal_id, root


def _publish(store: ObjectStore, start: datetime, doc: dict[str, Any], blob: bytes, *, now: datetime,
             lock_days: int) -> str:
    """Write the seal document and its leaves to the object store, locked where the bucket supports it."""
    key = f"seals/{start.strftime('%Y/%m/%d/%H')}"
    leaves_uri = store.put(key + ".leaves.zst", blob)
    uri = store.put(key + ".json", json.dumps({**doc, "leaves_uri": leaves_uri}, sort_keys=True).encode(),
                    metadata={"root": doc["root"]})
    for target in (uri, leaves_uri):
        _lock(store, target, until=now + timedelta(days=lock_days) if lock_days else None)
    return uri


def _lock(store: ObjectStore, uri: str, *, until: datetime | None) -> bool:
    """Object Lock retention (COMPLIANCE) on S3 buckets created with Object Lock; False elsewhere."""
    client = getattr(store, "client", None)
    if client is None or until is None or not uri.startswith("s3://"):
        return False
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        client.put_object_retention(Bucket=bucket, Key=key,
                                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
        return True
    except Exception as exc:  # buckets without Object Lock refuse with several error codes
        log.info("seal %s stored without Object Lock retention: %s", uri, type(exc).__name__)
        return False
