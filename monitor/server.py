"""`clearance monitor`'s web server (aiohttp): the page, /events, /api/summary, /metrics.

One background task computes the summary twice a second (the tally under its lock, the
reader's state, the last sample of the worker group) and every open /events stream sends
the newest one. A thread samples the worker group once a second through the Admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clearance.settings import Settings
from monitor.group import GroupView, LagTrend, admin_client, probe_group
from monitor.metrics import FloorCollector, registry
from monitor.page import ASSETS, asset, live_page
from monitor.reader import Reader
from monitor.tally import Tally

log = logging.getLogger("clearance.monitor")

PUSH_SECONDS = 0.5
GROUP_SECONDS = 1.0
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_TYPES = {".css": "text/css", ".js": "text/javascript"}


class Monitor:
    """The tally, its reader, the worker group's last sample and the newest summary."""

    def __init__(self, settings: Settings, tally: Tally, *, wall: Any = time.time) -> None:
        self.settings = settings
        self.tally = tally
        self.lock = threading.Lock()
        self.reader = Reader(settings, tally, self.lock, tally.since_ms)
        self.trend = LagTrend()
        self.group: dict[str, Any] | None = None
        self.wall = wall
        self.latest = b"{}"
        self.pushed = 0
        self._stop = threading.Event()
        self._group_thread = threading.Thread(target=self._sample_group, name="monitor-group", daemon=True)
        self.registry = registry(FloorCollector(tally, self.lock, lambda: self.group))

    def summary(self) -> dict[str, Any]:
        now_ms = int(self.wall() * 1000)
        with self.lock:
            self.tally.roll(now_ms)
            out = self.tally.summary(now_ms)
        reading = self.reader.reading
        out["reader"] = {
            "records": reading.records,
            "denied": dict(reading.denied),
            "error": reading.error,
            "caughtUp": reading.caught_up,
        }
        out["workers"] = self.group
        return out

    def start(self) -> None:
        self.reader.start()
        self._group_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.reader.stop()
        self._group_thread.join(5)

    def _sample_group(self) -> None:
        admin = admin_client(self.settings)
        while not self._stop.is_set():
            try:
                view = probe_group(admin, self.settings)
            except Exception as exc:  # never let the sampler die: the page shows the error
                log.warning("monitor: sampling the worker group failed: %s", type(exc).__name__)
                view = GroupView(self.settings.app_id, error=type(exc).__name__)
            if view.error is None:
                self.trend.add(view.total_lag)
            self.group = view.as_dict(self.trend)
            self._stop.wait(GROUP_SECONDS)


def build_app(monitor: Monitor) -> web.Application:
    app = web.Application()
    page = live_page().encode()
    # Set when the server shuts down (SIGTERM, Ctrl-C): every open /events stream ends then, and
    # the page's EventSource reconnects to the next monitor by itself. Without it a live screen's
    # stream kept the server waiting out aiohttp's 60 s for open requests: `clearance monitor`
    # took 122 s to stop on SIGTERM with one browser open (4 December), and a container's stop
    # would have killed it before its reader closed.
    closing = asyncio.Event()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_headers())

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        suffix = name[name.rfind(".") :] if "." in name else ""
        return web.Response(body=asset(name), content_type=_TYPES.get(suffix, "text/plain"), headers=_headers())

    async def summary(request: web.Request) -> web.Response:
        body = orjson.dumps(await asyncio.to_thread(monitor.summary))
        return web.Response(body=body, content_type="application/json", headers=_headers())

    async def metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, monitor.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**_headers(), "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        sent = -1
        while not closing.is_set():
            if monitor.pushed != sent:
                sent = monitor.pushed
                await response.write(b"data: " + monitor.latest + b"\n\n")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), PUSH_SECONDS / 5)
        return response

    async def close_streams(app: web.Application) -> None:
        closing.set()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def pusher(app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                try:
                    monitor.latest = orjson.dumps(await asyncio.to_thread(monitor.summary))
                    monitor.pushed += 1
                except Exception:  # a bug in one summary must not end the page's updates
                    log.exception("monitor: summary failed")
                await asyncio.sleep(PUSH_SECONDS)

        monitor.start()
        task = asyncio.create_task(loop())
        yield
        task.cancel()
        await asyncio.to_thread(monitor.stop)

    app.router.add_get("/", index)
    app.router.add_get("/assets/{name}", static)
    app.router.add_get("/api/summary", summary)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(pusher)
    app.on_shutdown.append(close_streams)  # before aiohttp waits for the open requests to finish
    return app


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
