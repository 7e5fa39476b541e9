"""The ingestion baseline: a minimal Flask handler doing one durable INSERT of the body per request."""
from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, request

from services.db import normalise_url

app = Flask(__name__)
engine = sa.create_engine(normalise_url(os.environ["DATABASE_URL"]), pool_size=10, max_overflow=20)
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_baseline_events "
                         "(id bigserial PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT now(), body bytea)")


@app.post("/events/<source>")
def post_event(source: str):
    with engine.begin() as conn:  # commit (synchronous_commit on) before answering: durable before the 202
        conn.execute(sa.text("INSERT INTO bench_baseline_events (body) VALUES (:b)"), {"b": request.get_data()})
    return {"status": "accepted"}, 202


@app.get("/ready")
def ready():
    return "ok"
