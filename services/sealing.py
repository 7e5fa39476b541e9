"""Tamper evidence: hourly seals (Merkle roots over every ledger row, chained), verification, inclusion proofs."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import zstandard
from sqlalchemy import Connection

from services import merkle
from services.errors import FlowledgerError, NotFound
from services.objectstore import ObjectStore
from services.payloads import PayloadConfig, load_raw

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


@dataclass
class VerifyReport:
    """What verify found: per-row differences and seal-level problems."""

    seals_checked: int = 0
    rows_checked: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    authorised: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.problems


def _prepare(conn: Connection) -> None:
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
    _prepare(conn)
    out: list[tuple[str, str, bytes]] = []
    for t in TABLES:
        rows = conn.execute(_leaf_sql(t, f"{t.at} >= :start AND {t.at} < :end"), {"start": start, "end": end}).all()
        out.extend((t.name, key, bytes(digest)) for key, digest in rows)
    out.sort(key=lambda leaf: (leaf[0], leaf[1]))
    return out


def current_leaf(conn: Connection, table: str, key: str) -> bytes | None:
    """The leaf hash one row has now, or None when the row is gone."""
    _prepare(conn)
    t = BY_NAME[table]
    row = conn.execute(_leaf_sql(t, t.match), {"k": key}).first()
    return bytes(row[1]) if row else None


def _pack(leaves: list[tuple[str, str, bytes]]) -> bytes:
    text = "".join(f"{table}\t{key}\t{digest.hex()}\n" for table, key, digest in leaves)
    return zstandard.ZstdCompressor(level=9).compress(text.encode())


def _unpack(blob: bytes) -> list[tuple[str, str, bytes]]:
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
    _prepare(conn)
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


def verify(conn: Connection, *, since: datetime | None = None, store: ObjectStore | None = None,
           payloads: PayloadConfig | None = None) -> VerifyReport:
    """Recompute every seal ending after since from the rows; report each row added, changed or removed."""
    conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    _prepare(conn)
    report = VerifyReport()
    seals = conn.execute(sa.text(
        "SELECT s.seal_id, s.period_start, s.period_end, s.root, s.prev_root, s.merkle_root, s.uri, l.leaves, "
        "lag(s.root) OVER (ORDER BY s.period_start) AS prev_actual, "
        "lag(s.period_end) OVER (ORDER BY s.period_start) AS prev_end "
        "FROM seals s LEFT JOIN seal_leaves l USING (seal_id) ORDER BY s.period_start")).mappings().all()
    removals = _authorised_removals(conn)
    for seal in seals:
        if since is not None and seal["period_end"] <= since:
            continue
        report.seals_checked += 1
        _check_seal(seal, report, store)
        current = leaves_for(conn, seal["period_start"], seal["period_end"])
        report.rows_checked += len(current)
        sealed = _unpack(seal["leaves"]) if seal["leaves"] is not None else []
        _diff(seal, sealed, current, report, removals)
        if payloads is not None:
            _check_payload_bytes(conn, payloads, seal, report)
    return report


def _check_seal(seal: Any, report: VerifyReport, store: ObjectStore | None) -> None:
    def problem(text: str) -> None:
        report.problems.append({"seal_id": seal["seal_id"], "period_start": seal["period_start"], "problem": text})

    if seal["leaves"] is None:
        problem("the seal's leaves are missing")
    elif merkle.root([d for _, _, d in _unpack(seal["leaves"])]) != seal["merkle_root"]:
        problem("the stored leaves do not hash to the sealed Merkle root")
    if merkle.chain(seal["prev_root"], seal["merkle_root"] or "", seal["period_start"],
                    seal["period_end"]) != seal["root"]:
        problem("the seal's root does not match its Merkle root, period and previous root")
    if seal["prev_root"] != seal["prev_actual"] or (seal["prev_end"] and seal["prev_end"] != seal["period_start"]):
        problem("the chain is broken: the previous seal was changed, removed or is not contiguous")
    if store is not None and seal["uri"]:
        try:
            published = json.loads(store.get(seal["uri"]))
        except FlowledgerError as exc:
            problem(f"the published seal document cannot be read: {exc}")
        else:
            if published.get("root") != seal["root"]:
                problem("the seal in the database differs from the one published to the object store")


def _authorised_removals(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows removed on purpose (force-delete, retention, erasure), as recorded by the maintainer."""
    if conn.execute(sa.text("SELECT to_regclass('ledger_removals')")).scalar() is None:
        return {}
    rows = conn.execute(sa.text("SELECT table_name, row_key, kind, actor, reason, at FROM ledger_removals"))
    found = {(r.table_name, r.row_key): {"kind": r.kind, "actor": r.actor, "reason": r.reason, "at": r.at}
             for r in rows}
    if conn.execute(sa.text("SELECT to_regclass('archived_payloads')")).scalar() is not None:
        # Tiering moves payload rows into archives; the archive entry is the authorisation.
        for r in conn.execute(sa.text("SELECT payload_id::text AS k, archived_at FROM archived_payloads")):
            found.setdefault(("payloads", r.k), {"kind": "retention", "actor": "retention",
                                                 "reason": "moved to archive", "at": r.archived_at})
    return found


def _diff(seal: Any, sealed: list[tuple[str, str, bytes]], current: list[tuple[str, str, bytes]],
          report: VerifyReport, removals: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
    before = {(t, k): d for t, k, d in sealed}
    after = {(t, k): d for t, k, d in current}
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            change = "removed"
        elif key not in before:
            change = "added"
        elif before[key] != after[key]:
            change = "changed"
        else:
            continue
        entry = {"table": key[0], "key": key[1], "change": change, "seal_id": seal["seal_id"],
                 "period_start": seal["period_start"]}
        if removals and key in removals and (change == "removed" or removals[key]["kind"] == "erasure"):
            report.authorised.append({**entry, **removals[key]})
        else:
            report.mismatches.append(entry)


def _check_payload_bytes(conn: Connection, cfg: PayloadConfig, seal: Any, report: VerifyReport) -> None:
    """Stored payload bytes are outside the leaves (they move when tiered): check them against their sealed sha256."""
    rows = conn.execute(sa.text(
        "SELECT payload_id, sha256 FROM payloads WHERE created_at >= :s AND created_at < :e"),
        {"s": seal["period_start"], "e": seal["period_end"]}).all()
    for payload_id, sha in rows:
        try:
            ok = hashlib.sha256(load_raw(conn, cfg, payload_id)).hexdigest() == sha
        except (FlowledgerError, zstandard.ZstdError):
            ok = False
        if not ok:
            report.mismatches.append({"table": "payloads", "key": str(payload_id), "change": "changed",
                                      "detail": "stored bytes do not match the sealed sha256",
                                      "seal_id": seal["seal_id"], "period_start": seal["period_start"]})


def inclusion_proof(conn: Connection, execution_id: Any) -> dict[str, Any]:
    """Merkle inclusion proofs of an execution's row, steps, transitions and audit events against their seals."""
    _prepare(conn)
    created = conn.execute(sa.text("SELECT created_at FROM executions WHERE execution_id = :e"),
                           {"e": execution_id}).scalar()
    if created is None:
        raise NotFound(f"execution {execution_id} not found")
    targets = [("executions", str(execution_id), created)]
    for t, sql in (("steps", "SELECT step_id::text, created_at FROM steps WHERE execution_id = :e"),
                   ("execution_transitions", "SELECT execution_id::text || ':' || seq, recorded_at "
                    "FROM execution_transitions WHERE execution_id = :e"),
                   ("execution_audit_events", 'SELECT id::text, "timestamp" FROM execution_audit_events '
                    "WHERE execution_id = :e")):
        targets += [(t, k, at) for k, at in conn.execute(sa.text(sql), {"e": execution_id}).all()]
    rows = [_row_proof(conn, table, key, at) for table, key, at in targets]
    return {"execution_id": str(execution_id), "rows": rows,
            "sealed": all(r["sealed"] for r in rows), "valid": all(r.get("valid", True) for r in rows)}


def _row_proof(conn: Connection, table: str, key: str, at: datetime) -> dict[str, Any]:
    seal = conn.execute(sa.text(
        "SELECT s.seal_id, s.period_start, s.period_end, s.root, s.prev_root, s.merkle_root, l.leaves "
        "FROM seals s JOIN seal_leaves l USING (seal_id) WHERE s.period_start <= :at AND s.period_end > :at"),
        {"at": at}).mappings().first()
    out: dict[str, Any] = {"table": table, "key": key, "sealed": seal is not None}
    if seal is None:
        return out
    leaves = _unpack(seal["leaves"])
    index = next((i for i, (t, k, _) in enumerate(leaves) if t == table and k == key), None)
    leaf = current_leaf(conn, table, key)
    out.update(seal_id=seal["seal_id"], period_start=seal["period_start"], merkle_root=seal["merkle_root"],
               root=seal["root"], prev_root=seal["prev_root"])
    if index is None or leaf is None:
        out.update(valid=False, detail="the row is not in its period's seal" if index is None else "row removed")
        return out
    path = merkle.proof([d for _, _, d in leaves], index)
    out.update(leaf=leaf.hex(), leaf_index=index, path=path, valid=merkle.verify_proof(leaf, path, seal["merkle_root"]))
    return out
