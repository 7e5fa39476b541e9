"""Step payload storage: raw JSON vs PostgreSQL TOAST (pglz, lz4) vs what the product stores, and packing."""
from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import sqlalchemy as sa

from bench import packing
from bench.dataset import STEP_NAMES
from bench.runner import Context, Row
from services import codec, fake_data, payloads
from services.objectstore import open_store
from services.payloads import TRAIN_AFTER_SAMPLES, PayloadConfig

PACK_GROUP = 32  # executions whose same step is packed into one frame


def _executions(count: int, seed: str) -> list[list[bytes]]:
    """count executions, each 10 steps x (input, output) of 1-8 KB realistic JSON."""
    rng = random.Random(seed)
    return [[codec.canonical_json(fake_data.step_payload(rng, step_name=name, size_hint=rng.randint(1024, 8192)))
             for name in STEP_NAMES for _ in (0, 1)] for _ in range(count)]


def run(ctx: Context) -> None:
    """Store the same payloads four ways and compare bytes; time compression per core."""
    measured = 10 if ctx.quick else 100
    warmup = _executions(TRAIN_AFTER_SAMPLES // 20 + 1, "storage-warmup")
    sample = _executions(measured, "storage-sample")
    flat = [p for execution in sample for p in execution]
    raw_bytes = sum(len(p) for p in flat)
    product_bytes, dictionary = _product(ctx, warmup, sample)
    toast = {method: _toast(ctx, method, flat) for method in ("pglz", "lz4")}

    ctx.add(Row("payload storage vs raw JSON", "bytes", [raw_bytes], [product_bytes], target=">= 6x smaller",
                ratio_kind="baseline/product", higher_is_better=False, met=raw_bytes / product_bytes >= 6,
                note=f"{len(flat)} payloads after the dictionary was trained ({TRAIN_AFTER_SAMPLES} samples), "
                     "pg_column_size of payloads.data (one zstd frame per payload, per-workflow dictionary)"))
    for method, size in toast.items():
        if size is None:
            ctx.add(Row(f"payload storage vs TOAST {method}", "bytes", target=">= 3x smaller",
                        note=f"not measured: this server has no {method} support"))
            continue
        ctx.add(Row(f"payload storage vs TOAST {method}", "bytes", [size], [product_bytes], target=">= 3x smaller",
                    ratio_kind="baseline/product", higher_is_better=False, met=size / product_bytes >= 3))

    speeds = [_speed(flat, dictionary) for _ in range(ctx.runs)]
    ctx.add(Row("payload compression speed, one core", "MB/s", [], speeds, target=">= 150 MB/s",
                met=sorted(speeds)[len(speeds) // 2] >= 150))
    for label, groups in (("packed per execution", sample),
                          ("packed per (workflow, step) x 32 executions", _by_step(sample))):
        blobs = [packing.pack(group, dictionary=dictionary) for group in groups]
        ok = all(packing.unpack(b, dictionary=dictionary) == g for b, g in zip(blobs, groups, strict=True))
        ctx.check(f"storage: {label} round trip is byte-exact", ok)
        packed = sum(len(b) for b in blobs)
        pspeeds = [_pack_speed(groups, dictionary) for _ in range(ctx.runs)]
        ctx.add(Row(f"variant {label} vs raw", "bytes", [raw_bytes], [packed], target=">= 6x smaller",
                    ratio_kind="baseline/product", higher_is_better=False, met=raw_bytes / packed >= 6,
                    note=f"bench/packing.py, level {codec.DEFAULT_LEVEL}, same dictionary; "
                         f"{statistics_median(pspeeds):.0f} MB/s one core; not the stored format"))


def _product(ctx: Context, warmup: list[list[bytes]], sample: list[list[bytes]]) -> tuple[int, Any]:
    """Store through services.payloads (training the dictionary on warmup); stored bytes of sample."""
    cfg = PayloadConfig(store=open_store("", local_root=ctx.workdir / "objects", endpoint_url="", region="us-east-1"))
    workflow = f"bench-storage-{uuid.uuid4().hex[:8]}"
    ids = []
    with ctx.database.writer() as conn:
        for batch, keep in ((warmup, False), (sample, True)):
            for execution in batch:
                execution_id = uuid.uuid4()
                for raw in execution:
                    ref = payloads.store(conn, cfg, execution_id=execution_id, kind="output",
                                         value=json.loads(raw), workflow_id=workflow)
                    if keep:
                        ids.append((ref.payload_id, raw))
    with ctx.database.reader() as conn:
        stored = conn.execute(sa.text(
            "SELECT sum(pg_column_size(data)), count(*) FILTER (WHERE dict_id IS NOT NULL), max(dict_id) "
            "FROM payloads WHERE payload_id = ANY(:ids)"), {"ids": [i for i, _ in ids]}).one()
        exact = all(payloads.load_raw(conn, cfg, pid) == raw for pid, raw in ids)
        dictionary = payloads._load_dictionary(conn, cfg, stored[2]) if stored[2] else None
    ctx.check("storage: every product payload reads back byte-exact", exact)
    ctx.check("storage: payloads after training use the workflow dictionary", stored[1] == len(ids),
              f"{stored[1]}/{len(ids)} with a dictionary")
    return int(stored[0]), dictionary


def _toast(ctx: Context, method: str, flat: list[bytes]) -> int | None:
    table = f"bench_toast_{method}"
    with ctx.database.admin() as conn:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
                conn.exec_driver_sql(f"CREATE TABLE {table} (id int, doc text COMPRESSION {method})")
        except sa.exc.DBAPIError:
            return None
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (:i, :d)"),
                     [{"i": i, "d": p.decode()} for i, p in enumerate(flat)])
    with ctx.database.admin() as conn:
        size = conn.execute(sa.text(f"SELECT sum(pg_column_size(doc)) FROM {table}")).scalar_one()
        same = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == len(flat)
        conn.exec_driver_sql(f"DROP TABLE {table}")
    ctx.check(f"storage: TOAST {method} table holds every payload", same)
    return int(size)


def _speed(flat: list[bytes], dictionary: Any) -> float:
    start = time.process_time()
    for p in flat:
        codec.encode(p, dictionary=dictionary)
    return sum(len(p) for p in flat) / (time.process_time() - start) / 1e6


def _pack_speed(groups: list[list[bytes]], dictionary: Any) -> float:
    start = time.process_time()
    for g in groups:
        packing.pack(g, dictionary=dictionary)
    return sum(len(p) for g in groups for p in g) / (time.process_time() - start) / 1e6


def _by_step(sample: list[list[bytes]]) -> list[list[bytes]]:
    groups = []
    for start in range(0, len(sample), PACK_GROUP):
        chunk = sample[start:start + PACK_GROUP]
        groups.extend([execution[k] for execution in chunk] for k in range(len(chunk[0])))
    return groups


def statistics_median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]
