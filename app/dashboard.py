"""Mounts the Dash app on the Flask server and imports each page module explicitly."""
from __future__ import annotations

import importlib
import re
import threading
from pathlib import Path

import dash
import flask
from dash import Input, Output, html

from app.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
PAGE_MODULES = ("pages.overview", "pages.executions", "pages.execution", "pages.events", "pages.event",
                "pages.dlq", "pages.workflows", "pages.not_found_404")
# The plotly.js basic build (MIT): not a page script, fetched by the first dcc.Graph that mounts.
PLOTLY_ASSET = "plotly-basic.min.js"
# Scripts Dash puts on every page that no page here needs:
# - @babel/polyfill (core-js 2): features every browser the dashboard supports has natively; its start cost
#   about 0.1 s of every page's main thread. Dash's own bundles use only its regeneratorRuntime, which
#   assets/regenerator-runtime.js (MIT, 25 KB) provides.
# - the dash_table bundle: no page uses DataTable (big tables are dash-ag-grid).
UNUSED_SCRIPTS = ("/deps/polyfill@", "/dash_table/bundle.")
# The dash-ag-grid bundle: only the list pages (registered with grid=True) draw a grid, but evaluating its 1.3 MB held
# up Dash's start on every page (about 0.06 s of a 0.9 s execution page). Other pages get a stand-in
# (app/lazy_ag_grid.js) that loads it when a grid first renders, e.g. after navigating to a list.
AG_GRID_SCRIPT = re.compile(r'<script src="(?P<src>[^"]*/dash_ag_grid/dash_ag_grid\.[^"]*\.js)"></script>')
LAZY_AG_GRID = (Path(__file__).with_name("lazy_ag_grid.js")).read_text()
NAV = (("Overview", "/"), ("Executions", "/executions"), ("Events", "/events"),
       ("Dead letters", "/dlq"), ("Workflows", "/workflows"))


class _Dash(dash.Dash):
    """dash.Dash whose first-request setup is finished before any other request of the process is served.

    Dash sets itself up on a process's first request (the bundles it may serve, the callbacks) but marks
    that done before doing it: a request on another gunicorn thread meanwhile got a 500 for a script and a
    dashboard that never started. The lock makes such a request wait; afterwards the setup returns at once.
    """

    _setup_lock = threading.Lock()

    def _setup_server(self) -> None:
        with self._setup_lock:
            super()._setup_server()

    def _generate_scripts_html(self) -> str:
        """Dash's page scripts less the ones no page here needs (UNUSED_SCRIPTS), the grid's loaded on demand."""
        tags = super()._generate_scripts_html().split("\n")
        kept = [tag for tag in tags if not any(unused in tag for unused in UNUSED_SCRIPTS)]
        if _has_grid(flask.request.path if flask.has_request_context() else ""):
            return "\n".join(kept)
        return "\n".join(_lazy_grid(tag) for tag in kept)


def _has_grid(path: str) -> bool:
    """Whether the page at path draws a grid as it opens."""
    return any(page.get("grid") and page["path"] == path for page in dash.page_registry.values())


def _lazy_grid(tag: str) -> str:
    """The dash-ag-grid script tag as its on-demand stand-in; any other tag as it is."""
    found = AG_GRID_SCRIPT.fullmatch(tag.strip())
    if found is None:
        return tag
    return f"<script>{LAZY_AG_GRID.replace('__SRC__', found['src'])}</script>"


def init_app(server: flask.Flask, runtime: Runtime) -> dash.Dash:
    """Create the Dash app on server with every page registered."""
    app = _Dash(
        "flowledger", server=server, url_base_pathname="/", use_pages=True, pages_folder="",
        assets_folder=str(ROOT / "assets"), title="Flowledger", suppress_callback_exceptions=True,
        assets_ignore=PLOTLY_ASSET.replace(".", r"\."),
    )
    app.index_string = app.index_string.replace("{%scripts%}", _plotly_on_demand(app) + "{%scripts%}", 1)
    for name in PAGE_MODULES:
        module = importlib.import_module(name)
        # What dash's own folder scan does after import: the page's layout is its module's layout.
        if name in dash.page_registry and hasattr(module, "layout"):
            dash.page_registry[name]["layout"] = module.layout
    app.layout = _shell()
    app.clientside_callback(WHO_JS, Output("nav-user-name", "children"), Output("nav-signout", "hidden"),
                            Input("_pages_location", "pathname"))
    server.extensions["dash"] = app
    return app


# The header's "who am I": the signed-in user and role with Sign out, or that the ledger is still in open mode.
WHO_JS = """
function(_path) {
    return window.flowledgerApi('GET', '/api/v1/me').then(function(r) {
        var me = r.body || {};
        if (!r.ok || !me.authenticated) { return ['', true]; }
        if (me.via === 'open') { return ['open mode: no users yet', true]; }
        return [me.name + ' · ' + me.role, me.via !== 'session'];
    });
}
"""


def _plotly_on_demand(app: dash.Dash) -> str:
    """An inline script pinning the URL dcc.Graph loads plotly.js from (when window.Plotly is unset) to our build.

    As a page script plotly.js took ~0.2 s of every page's start, before Dash even asked for the layout; loaded by
    the graph it is fetched and evaluated while the page's first callback is on the server. Dash's renderer points
    the URL at the 4.8 MB full build on mount, so the property ignores that write.
    """
    url = app.get_asset_url(PLOTLY_ASSET)
    return ("<script>Object.defineProperty(window, '_dashPlotlyJSURL', "
            f"{{get: function () {{ return '{url}'; }}, set: function () {{}}}});</script>\n")


def _shell() -> html.Div:
    try:
        from components.shell import app_shell
    except ImportError:
        return html.Div([html.Nav([html.A(label, href=href) for label, href in NAV]), dash.page_container])
    return app_shell(dash.page_container, list(NAV))
