"""Start the product (`flowledger serve`, gunicorn gthread) or the baseline app under the same gunicorn config."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

WORKERS, THREADS = 2, 8  # the Settings defaults `flowledger serve` runs with


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(ctx: Any, kind: str) -> str:
    """Start `kind` ("product" or "baseline") once per bench run; returns its base URL."""
    servers = ctx.extras.setdefault("servers", {})
    if kind in servers:
        return servers[kind]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env["DATABASE_URL"] = ctx.admin_url.render_as_string(hide_password=False)
    log = (ctx.workdir / f"{kind}.log").open("wb")
    if kind == "product":
        env.update({"FLOWLEDGER_DATA_DIR": str(ctx.workdir / "serve"), "FLOWLEDGER_PORT": str(port),
                    "FLOWLEDGER_WORKERS": str(WORKERS), "FLOWLEDGER_THREADS": str(THREADS),
                    "FLOWLEDGER_SCHEDULER_ENABLED": "false", "FLOWLEDGER_MAX_BODY_BYTES": str(64 * 2**20)})
        cmd = [sys.executable, "-m", "app", "serve"]
        ready = "/readyz"
    else:
        cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
               "--worker-class", "gthread", "--threads", str(THREADS), "--keep-alive", "5", "--timeout", "60",
               "--access-logfile", "-", "bench.baseline_app:app"]
        ready = "/ready"
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parent.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {(ctx.workdir / f'{kind}.log').read_text()[-2000:]}")
        try:
            if requests.get(url + ready, timeout=2).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or too busy starting to answer in time
            pass
        time.sleep(0.2)  # polling interval while the port opens
    else:
        process.terminate()
        raise RuntimeError(f"{kind} server not ready in 180 s")
    servers[kind] = url

    def stop() -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

    ctx.extras.setdefault("stoppers", []).append(stop)
    return url
