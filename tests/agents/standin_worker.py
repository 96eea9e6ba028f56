"""A stand-in for `clearance worker` under the supervisor's tests: no broker, no Faust.

It serves /healthz, /readyz and /metrics on CLEARANCE_WEB_PORT, writes `pid` into its
CLEARANCE_DATA_DIR, and on SIGTERM writes `terminated` there and exits 0. The process whose
data directory is named STANDIN_FAIL exits by itself with STANDIN_EXIT_CODE after
STANDIN_EXIT_AFTER seconds; STANDIN_READY_AFTER delays its readiness; STANDIN_STOP_SECONDS makes
its clean stop take that long.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

DATA = Path(os.environ["CLEARANCE_DATA_DIR"])
NAME = DATA.name
STARTED = time.monotonic()
READY_AFTER = float(os.environ.get("STANDIN_READY_AFTER", "0"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        ready = time.monotonic() - STARTED >= READY_AFTER
        if self.path == "/metrics":
            body = (
                "# HELP clearance_documents_in documents received\n# TYPE clearance_documents_in counter\n"
                f'clearance_documents_in{{topic="orders"}} {int(NAME[1:]) + 1}\n'
                f"# HELP clearance_windows_open open windows\n# TYPE clearance_windows_open gauge\n"
                f"clearance_windows_open {10 * (int(NAME[1:]) + 1)}\n"
            )
            status = 200
        elif self.path == "/readyz":
            status, body = (200, "ready\n") if ready else (503, "not ready\n")
        else:
            status, body = 200, "ok\n"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _terminated(signum: int, frame: FrameType | None) -> None:
    (DATA / "terminated").write_text(str(signum), encoding="utf-8")
    time.sleep(float(os.environ.get("STANDIN_STOP_SECONDS", "0")))
    sys.exit(0)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    (DATA / "pid").write_text(str(os.getpid()), encoding="utf-8")
    (DATA / "env").write_text(os.environ.get("CLEARANCE_PROCESSES", ""), encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["CLEARANCE_WEB_PORT"])), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if os.environ.get("STANDIN_FAIL") == NAME:
        time.sleep(float(os.environ.get("STANDIN_EXIT_AFTER", "1")))
        return int(os.environ.get("STANDIN_EXIT_CODE", "3"))
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
