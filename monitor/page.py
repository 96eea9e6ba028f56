"""The page's HTML: the live page (assets served by the monitor) and the self-contained report.

Both come from one template (`assets/index.html`), so the report shows the same figures
as the screen. The report inlines the stylesheet, ECharts, the page script and the
summary; the summary is JSON inside `<script type="application/json">`, with `<`, `>` and
`&` escaped as \\u003c, \\u003e and \\u0026 so no text from the data can close the element.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import orjson

ASSETS = ("monitor.css", "monitor.js", "echarts.simple.min.js", "ECHARTS-LICENSE", "ECHARTS-NOTICE")
ECHARTS_VERSION = "6.1.0"  # npm echarts@6.1.0, dist/echarts.simple.min.js (line, bar, pie), Apache-2.0


def asset(name: str) -> bytes:
    """One shipped file (a name from ASSETS)."""
    if name not in ASSETS:
        raise KeyError(name)
    return files("monitor").joinpath("assets", name).read_bytes()


def _template() -> str:
    return files("monitor").joinpath("assets", "index.html").read_text(encoding="utf-8")


def live_page() -> str:
    """The page the server sends: the assets by URL, the data from /events."""
    return (
        _template()
        .replace("<!--STYLE-->", '<link rel="stylesheet" href="assets/monitor.css">')
        .replace("<!--DATA-->", "")
        .replace(
            "<!--SCRIPTS-->",
            '<script src="assets/echarts.simple.min.js"></script>\n<script src="assets/monitor.js"></script>',
        )
    )


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report_page(summary: dict[str, Any], title: str) -> str:
    """One HTML file with everything inlined: opens from disk, no server, no network."""
    css = asset("monitor.css").decode()
    scripts = "\n".join(
        f"<script>{_inline_js(asset(name).decode())}</script>" for name in ("echarts.simple.min.js", "monitor.js")
    )
    heading = f"<title>{_escape(title)}</title>"
    return (
        _template()
        .replace("<title>Clearance floor</title>", heading)
        .replace("<!--STYLE-->", f"<style>{css}</style>")
        .replace("<!--DATA-->", f'<script id="summary-data" type="application/json">{script_json(summary)}</script>')
        .replace("<!--SCRIPTS-->", scripts)
    )


def _inline_js(code: str) -> str:
    return code.replace("</script", "<\\/script")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
