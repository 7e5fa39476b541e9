"""Scheduler wiring: APScheduler in process; each job guards itself with a PostgreSQL lock."""
from __future__ import annotations

import atexit
import logging

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from app.runtime import Runtime
from services import maintenance

log = logging.getLogger(__name__)


def init_app(server: Flask, runtime: Runtime) -> BackgroundScheduler:
    """Start the background scheduler with every job; stopped at exit."""
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    database = runtime.database
    scheduler.add_job(lambda: maintenance.ensure_partitions(database), "interval", hours=6,
                      id="partitions", next_run_time=None)
    scheduler.start()
    server.extensions["scheduler"] = scheduler
    atexit.register(lambda: scheduler.shutdown(wait=False) if scheduler.running else None)
    return scheduler
