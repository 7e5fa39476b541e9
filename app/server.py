"""Production serving: gunicorn with threaded workers around the app factory."""
from __future__ import annotations

import logging
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from app.runtime import Runtime, database_for
from services.errors import ConfigurationError

log = logging.getLogger(__name__)


def ensure_port_free(host: str, port: int) -> None:
    """Refuse at once, before the database starts, when something already listens on host:port.

    Without this gunicorn retried for five seconds after the start-up banner had announced the URL.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror}. Is another flowledger serve running there? Stop "
                f"it, or choose another port: FLOWLEDGER_PORT={port + 1} flowledger serve") from None


class FlowledgerServer(BaseApplication):
    """Gunicorn application whose workers each build the app on their own connections."""

    def __init__(self, runtime: Runtime, options: dict[str, Any] | None = None) -> None:
        self.runtime = runtime
        self.options = options or {}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)

    def load(self) -> Any:
        from app.factory import create_app

        # Engines must not cross fork(): each worker opens its own pool to the same server.
        settings = self.runtime.settings
        worker_runtime = Runtime(settings=settings,
                                 database=database_for(settings, self.runtime.database.admin_url))
        return create_app(runtime=worker_runtime)


def serve(runtime: Runtime) -> None:
    """Run until SIGTERM/SIGINT: drain requests, stop workers, then return to the caller."""
    settings = runtime.settings
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": settings.threads,
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "flowledger",
    }
    FlowledgerServer(runtime, options).run()
