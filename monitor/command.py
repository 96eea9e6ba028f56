"""`clearance monitor`: the clearance floor's live page, a subscriber of the result topics."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime

from clearance.kafka import KafkaUnavailable, probe
from clearance.settings import Settings
from monitor.tally import Tally, day_start, parse_iso_ms
from pipeline.timeconv import CST

log = logging.getLogger("clearance.monitor")
# How long a stopping monitor waits for a request still open (its live streams end at once).
SHUTDOWN_SECONDS = 5.0


def since(text: str, now_ms: int) -> tuple[int | None, bool]:
    """(since_ms, daily) of `--since`: today (China time, rolls at midnight), start, or an ISO time.

    An ISO time without an offset is China time.
    """
    if text == "today":
        return day_start(now_ms), True
    if text == "start":
        return None, False
    try:
        return parse_iso_ms(text), False
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--since: not today, start or an ISO-8601 time: {text!r}") from None
        return int(parsed.replace(tzinfo=CST).timestamp() * 1000), False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearance monitor", description=__doc__)
    parser.add_argument("--since", default="today", help="today (China time, default), start, or an ISO-8601 time")
    parser.add_argument("--bind", help="address to listen on (default 127.0.0.1, env CLEARANCE_MONITOR_BIND)")
    parser.add_argument("--port", type=int, help="port (default 8080, env CLEARANCE_MONITOR_PORT)")
    return parser


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env().with_overrides(monitor_bind=args.bind, monitor_port=args.port)
        logging.getLogger().setLevel(settings.log_level)  # upper case: Settings reads it so
        since_ms, daily = since(args.since, int(time.time() * 1000))
        probe(settings)
    except (ValueError, KafkaUnavailable) as exc:
        print(f"clearance monitor: {exc}", file=sys.stderr)
        return 2
    from aiohttp import web

    from monitor.server import Monitor, build_app

    monitor = Monitor(settings, Tally(since_ms, daily=daily))
    url = f"http://{settings.monitor_bind}:{settings.monitor_port}/"
    log.info("clearance monitor on %s (group %s, worker group %s)", url, settings.monitor_group, settings.app_id)
    try:
        # The open /events streams end on shutdown (monitor/server.py); 5 s for any other request
        web.run_app(
            build_app(monitor),
            host=settings.monitor_bind,
            port=settings.monitor_port,
            print=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
    except OSError as exc:
        print(f"clearance monitor: cannot listen on {url}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
