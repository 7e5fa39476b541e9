"""Verification of the seals: recompute each from the rows, name every row added, changed or removed, and
Merkle inclusion proofs of one execution's rows (what an auditor asks for)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import zstandard
from sqlalchemy import Connection

from services import merkle, sealing
from services.errors import FlowledgerError, NotFound
from services.objectstore import ObjectStore
from services.payloads import PayloadConfig, load_raw


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


def verify(conn: Connection, *, since: datetime | None = None, store: ObjectStore | None = None,
           payloads: PayloadConfig | None = None) -> VerifyReport:
    """Recompute every seal ending after since from the rows; report each row added, changed or removed."""
    conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    sealing.prepare(conn)
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
        current = sealing.leaves_for(conn, seal["period_start"], seal["period_end"])
        report.rows_checked += len(current)
        sealed = sealing.unpack(seal["leaves"]) if seal["leaves"] is not None else []
        _diff(seal, sealed, current, report, removals)
        if payloads is not None:
            _check_payload_bytes(conn, payloads, seal, report)
    return report


def _check_seal(seal: Any, report: VerifyReport, store: ObjectStore | None) -> None:
    def problem(text: str) -> None:
        report.problems.append({"seal_id": seal["seal_id"], "period_start": seal["period_start"], "problem": text})

    if seal["leaves"] is None:
        problem("the seal's leaves are missing")
    elif merkle.root([d for _, _, d in sealing.unpack(seal["leaves"])]) != seal["merkle_root"]:
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
    sealing.prepare(conn)
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
    leaves = sealing.unpack(seal["leaves"])
    index = next((i for i, (t, k, _) in enumerate(leaves) if t == table and k == key), None)
    leaf = sealing.current_leaf(conn, table, key)
    out.update(seal_id=seal["seal_id"], period_start=seal["period_start"], merkle_root=seal["merkle_root"],
               root=seal["root"], prev_root=seal["prev_root"])
    if index is None or leaf is None:
        out.update(valid=False, detail="the row is not in its period's seal" if index is None else "row removed")
        return out
    path = merkle.proof([d for _, _, d in leaves], index)
    out.update(leaf=leaf.hex(), leaf_index=index, path=path, valid=merkle.verify_proof(leaf, path, seal["merkle_root"]))
    return out
