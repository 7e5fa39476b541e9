"""A new server process answers the dashboard's first requests only once Dash is set up.

Dash sets itself up on a process's first request (which bundles it may serve, which callbacks exist) but
marks that done before doing it, so a second request arriving meanwhile, on another of gunicorn's threads,
was answered before the setup: a 500 for a script, and a page that never started ("DashRenderer is not
defined")."""
from __future__ import annotations

import re
import threading

from app.factory import create_app


def test_a_request_arriving_while_the_first_one_sets_dash_up_waits_for_it(app, runtime, monkeypatch):
    with app.test_client() as client:
        page = client.get("/").get_data(as_text=True)
    script = re.findall(r'<script src="(/_dash-component-suites/dash/[^"]+)"', page)[0]
    fresh = create_app(runtime=runtime, start_scheduler=False)
    dash_app = fresh.extensions["dash"]
    entered, release = threading.Event(), threading.Event()
    walk = dash_app._walk_assets_directory

    def slow_walk() -> None:  # the first request is held inside the setup
        entered.set()
        release.wait(30)
        walk()

    monkeypatch.setattr(dash_app, "_walk_assets_directory", slow_walk)
    answers: dict[str, int] = {}

    def get(name: str, path: str) -> None:
        with fresh.test_client() as client:
            answers[name] = client.get(path).status_code

    first = threading.Thread(target=get, args=("page", "/"))
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=get, args=("script", script))
    second.start()
    second.join(timeout=2)  # before the fix it was answered (500) by now; after it, it waits for the setup
    release.set()
    first.join(30)
    second.join(30)
    assert answers == {"page": 200, "script": 200}
