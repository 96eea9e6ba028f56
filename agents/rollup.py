"""One health for N worker processes: the supervisor's /healthz, /readyz and /metrics.

Each answer asks every process's own port (127.0.0.1) at once, with a short timeout:

* /healthz: 200 when every process is running and its /healthz answers 200;
* /readyz: 200 when every process's /readyz answers 200 (all recovered, none rebalancing);
* /metrics: every process's metrics, each sample labelled `process="p0"` ...,
  grouped by metric family as the Prometheus text format requires, plus
  `clearance_process_up{process}` (1 when its /metrics answered).

The bodies of /healthz and /readyz name each process with its answer.
A plain threaded HTTP server (no Faust here): the supervisor runs no event loop.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TIMEOUT_S = 2.0


def _always(name: str) -> bool:
    return True


@dataclass(eq=False)
class Rollup:
    """The processes (name, web port) and whether each is still running."""

    children: Sequence[tuple[str, int]]
    alive: Callable[[str], bool] = _always
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(len(self.children), 1), thread_name_prefix="rollup")

    def ask(self, path: str) -> dict[str, tuple[int, str]]:
        """Each process's (status, body) for `path`; status 0 when it did not answer."""
        answers = self._pool.map(lambda child: _get(child[1], path), self.children)
        return {name: answer for (name, _), answer in zip(self.children, answers, strict=True)}

    def health(self, path: str) -> tuple[int, str]:
        """(200 or 503, one line per process) for /healthz or /readyz."""
        answers = self.ask(path)
        lines, ok = [], True
        for name, (status, body) in answers.items():
            if not self.alive(name):
                lines.append(f"{name}: exited")
                ok = False
                continue
            ok = ok and status == 200
            lines.append(f"{name}: {body.strip() or 'no answer'}" + ("" if status in (0, 200) else f" ({status})"))
        return (200 if ok else 503), "\n".join(lines) + "\n"

    def metrics(self) -> str:
        answers = self.ask("/metrics")
        texts = {name: body if status == 200 and self.alive(name) else None for name, (status, body) in answers.items()}
        return merge_metrics(texts)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        url = f"http://127.0.0.1:{port}{path}"
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310 - our own localhost URL
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def merge_metrics(texts: Mapping[str, str | None]) -> str:
    """Prometheus texts of several processes as one: each sample labelled with its process, families together.

    `None` is a process that did not answer: only its `clearance_process_up` (0) appears."""
    headers: dict[str, dict[str, str]] = {}
    samples: dict[str, list[str]] = {}
    for process, text in texts.items():
        family = ""
        for line in (text or "").splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    headers.setdefault(family, {}).setdefault(parts[1], line)
                    samples.setdefault(family, [])
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            owner = family if family and name.startswith(family) else name
            samples.setdefault(owner, []).append(with_label(line, "process", process))
    up = "clearance_process_up"
    headers[up] = {"HELP": f"# HELP {up} 1 when the worker process answered /metrics", "TYPE": f"# TYPE {up} gauge"}
    samples[up] = [f'{up}{{process="{process}"}} {0 if text is None else 1}' for process, text in texts.items()]
    out: list[str] = []
    for family, lines in samples.items():
        head = headers.get(family, {})
        out += [head[k] for k in ("HELP", "TYPE") if k in head]
        out += lines
    return "\n".join(out) + "\n"


def with_label(line: str, key: str, value: str) -> str:
    """A sample line with one more label, first: `m{a="1"} 2` -> `m{key="value",a="1"} 2`."""
    label = f'{key}="{value}"'
    brace, space = line.find("{"), line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1 :]
        return f"{line[:brace]}{{{label}{'' if rest.startswith('}') else ','}{rest}"
    if space == -1:
        return line
    return f"{line[:space]}{{{label}}}{line[space:]}"


class Server:
    """The supervisor's web port: bound at construction (so a taken port fails at once), served from `start()`."""

    def __init__(self, bind: str, port: int, rollup: Rollup) -> None:
        self.rollup = rollup
        self.http = ThreadingHTTPServer((bind, port), _handler(rollup))
        self.http.daemon_threads = True
        self._thread = threading.Thread(target=self.http.serve_forever, name="rollup-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.http.shutdown()
        self.http.server_close()
        self.rollup.close()


def _handler(rollup: Rollup) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/readyz"):
                status, body = rollup.health(path)
                self._reply(status, body, "text/plain; charset=utf-8")
            elif path == "/metrics":
                self._reply(200, rollup.metrics(), "text/plain; version=0.0.4")
            else:
                self._reply(404, "not found\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server signature
            pass  # probes every few seconds: no access log

    return Handler
