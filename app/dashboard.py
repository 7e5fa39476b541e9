"""Mounts the Dash app on the Flask server and imports each page module explicitly."""
from __future__ import annotations

import importlib
from pathlib import Path

import dash
from dash import html
from flask import Flask

from app.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
PAGE_MODULES = ("pages.overview", "pages.executions", "pages.execution", "pages.events", "pages.event",
                "pages.dlq", "pages.workflows")
NAV = (("Overview", "/"), ("Executions", "/executions"), ("Events", "/events"),
       ("Dead letters", "/dlq"), ("Workflows", "/workflows"))


def init_app(server: Flask, runtime: Runtime) -> dash.Dash:
    """Create the Dash app on server with every page registered."""
    app = dash.Dash(
        "flowledger", server=server, url_base_pathname="/", use_pages=True, pages_folder="",
        assets_folder=str(ROOT / "assets"), title="Flowledger", suppress_callback_exceptions=True,
    )
    for name in PAGE_MODULES:
        module = importlib.import_module(name)
        # What dash's own folder scan does after import: the page's layout is its module's layout.
        if name in dash.page_registry and hasattr(module, "layout"):
            dash.page_registry[name]["layout"] = module.layout
    app.layout = _shell()
    server.extensions["dash"] = app
    return app


def _shell() -> html.Div:
    try:
        from components.shell import app_shell
    except ImportError:
        return html.Div([html.Nav([html.A(label, href=href) for label, href in NAV]), dash.page_container])
    return app_shell(dash.page_container, list(NAV))
