"""The page shell and the rule that components stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

from dash import dcc, html

from components.shell import NAV_ITEMS, app_shell

COMPONENTS = Path(__file__).resolve().parents[2] / "components"


def test_shell_has_the_brand_and_one_link_per_nav_item():
    shell = app_shell(html.Div(id="page"), NAV_ITEMS)
    header, main = shell.children
    brand, links, user = header.children.children
    assert "Flowledger" in [child.children for child in brand.children]
    assert [(link.children, link.href) for link in links.children] == NAV_ITEMS
    assert all(isinstance(link, dcc.Link) for link in links.children)
    assert main.children.id == "page"
    # who is signed in is filled in the browser; Sign out stays hidden until then
    name, signout = user.children
    assert name.id == "nav-user-name" and (signout.href, signout.hidden) == ("/logout", True)


def test_default_navigation_lists_every_page():
    assert [label for label, _ in NAV_ITEMS] == ["Overview", "Executions", "Events", "Dead letters", "Workflows"]


def test_components_import_nothing_from_services_app_or_pages():
    for path in COMPONENTS.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in {"services", "app", "pages"}, f"{path.name} imports {name}"
