"""The HTTP server of ``diffuse serve``: static files, a JSON API and one worker thread that runs the queue.

Bound to 127.0.0.1 by default. Every request must name this server in its ``Host`` header (a DNS-rebinding page
cannot), and a request with an ``Origin`` (or ``Sec-Fetch-Site: cross-site``) from another origin is refused
with 403, so another site open in the same browser can neither read nor start anything.

API (JSON):

- ``GET /api/nodes``: the node types; ``POST /api/validate``: ``{ok, error, node, port}`` for a workflow;
- ``GET /api/workflows``, ``GET|POST /api/workflows/<name>``: saved workflows under ``<root>/workflows/``;
- ``POST /api/queue`` (a workflow; 400 with ``{error, node, port}`` if it is bad), ``GET /api/queue``: the runs
  with each node's state, progress, live preview (a PNG data URL of the sampler's x0 estimate, updated every few
  steps while it samples) and preview files;
- ``GET /api/gallery``: files written by save nodes; ``GET /api/file?path=``: one file under an allowed folder;
- ``GET /api/bench``, ``GET /api/bench/<id>``: ``diffuse bench`` reports (``report.json``) under the bench folder.
"""

from __future__ import annotations

import json
import mimetypes
import queue
import re
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from diffcore.io import write_json

__all__ = ["RunQueue", "UIServer", "make_server", "serve"]

STATIC = Path(__file__).with_name("static")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
PREVIEW_EVERY = 4
"""The queue's live preview: the sampler's x0 estimate every this many steps (and at the last)."""


class RunQueue:
    """Runs queued workflows one at a time in a worker thread and keeps every run's state for the UI.

    Args:
        executor: a :class:`~diffcore.workflows.Executor` (its cache of unchanged nodes lasts across runs).
        gallery_file: a JSON-lines file of saved outputs, appended after each run (the gallery survives restarts).
    """

    def __init__(self, executor: Any, gallery_file: Path) -> None:
        self.executor = executor
        self.gallery_file = gallery_file
        self.runs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._todo: queue.Queue[tuple[dict[str, Any], Any]] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="diffuse-ui-runs", daemon=True)
        self._worker.start()

    def submit(self, workflow: Any) -> dict[str, Any]:
        """Queue a validated workflow; return its run record."""
        run = {
            "id": "",
            "name": workflow.name or "untitled",
            "status": "queued",
            "created": time.strftime("%H:%M:%S"),
            "nodes": {
                n.id: {
                    "type": n.type,
                    "state": "waiting",
                    "n": 0,
                    "total": None,
                    "desc": "",
                    "files": [],
                    "preview": None,
                    "preview_step": None,
                    "preview_total": None,
                }
                for n in workflow.nodes
            },
            "files": [],
            "error": None,
            "error_node": None,
            "seconds": None,
        }
        with self._lock:
            run["id"] = f"run-{len(self.runs) + 1}"
            self.runs.append(run)
        self._todo.put((run, workflow))
        return run

    def snapshot(self) -> list[dict[str, Any]]:
        """Every run's state, newest first (a copy, safe to serialise)."""
        with self._lock:
            return json.loads(json.dumps(self.runs[::-1], default=str))

    def _on_event(self, run: dict[str, Any], event: dict[str, Any]) -> None:
        with self._lock:
            node = run["nodes"].get(event.get("node", ""), None)
            kind = event["event"]
            if kind == "node_start" and node is not None:
                node["state"] = "running"
            elif kind == "progress" and node is not None:
                node.update(n=event["n"], total=event["total"], desc=event["desc"])
            elif kind == "preview" and node is not None:
                node.update(preview=event["image"], preview_step=event["n"], preview_total=event["total"])
            elif kind == "node_done" and node is not None:
                node["state"] = ("cached" if event["needed"] else "skipped") if event["cached"] else "done"
                node["files"] = event["files"][:64]
                node["seconds"] = event["seconds"]
            elif kind == "done":
                run["files"] = event["files"]
                run["seconds"] = event["seconds"]

    def _work(self) -> None:
        from diffcore.workflows import GraphError, NodeError

        while True:
            run, workflow = self._todo.get()
            with self._lock:
                run["status"] = "running"
            try:
                self.executor.run(workflow, lambda e, run=run: self._on_event(run, e))
                status, error, node = "done", None, None
            except (GraphError, NodeError) as exc:
                status, error, node = "failed", str(exc), exc.node
            except Exception as exc:  # a bug: keep serving, show it
                status, error, node = "failed", f"{type(exc).__name__}: {exc}", None
                traceback.print_exc()
            with self._lock:
                run.update(status=status, error=error, error_node=node)
                if node in run["nodes"]:
                    run["nodes"][node]["state"] = "failed"
                files = list(run["files"])
            if files:
                self.gallery_file.parent.mkdir(parents=True, exist_ok=True)
                with self.gallery_file.open("a", encoding="utf-8") as log:  # an append-only log
                    for f in files:
                        log.write(json.dumps({"path": f, "run": run["id"], "workflow": run["name"]}) + "\n")


class UIServer(ThreadingHTTPServer):
    """The HTTP server with the UI's state: the registry, the run queue and the folders it may serve."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, root: Path, device: str, bench_dir: Path) -> None:
        from diffcore.workflows import Executor, default_registry

        super().__init__(address, Handler)
        self.root = root.resolve()
        self.bench_dir = (bench_dir if bench_dir.is_absolute() else self.root / bench_dir).resolve()
        self.workflows_dir = self.root / "workflows"
        self.work_dir = self.root / "runs" / "workflows"
        self.registry = default_registry()
        executor = Executor(
            self.registry,
            self.work_dir,
            device=device,
            root=self.root,
            quiet=True,
            preview_every=PREVIEW_EVERY,
        )
        self.queue = RunQueue(executor, self.root / "runs" / "ui" / "gallery.jsonl")
        host = address[0]
        names = set(LOCAL_NAMES) | {host, f"[{host}]"}
        self.allowed_hosts = {f"{name}:{self.server_address[1]}" for name in names}

    @property
    def url(self) -> str:
        """The address to open in a browser."""
        host = self.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.server_address[1]}/"

    def readable(self, raw: str) -> Path | None:
        """``raw`` resolved, if it lies under the root, the bench folder or the work folder; else None."""
        p = Path(raw)
        p = (p if p.is_absolute() else self.root / p).resolve()
        for base in (self.root, self.bench_dir, self.work_dir.resolve()):
            if p.is_relative_to(base) and p.is_file():
                return p
        return None


class Handler(BaseHTTPRequestHandler):
    """One request: the origin checks, then a static file or an API call."""

    server: UIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the UI polls, and a line per poll would bury the useful output."""

    # -- checks ---------------------------------------------------------------------------------------------
    def _origin_ok(self) -> str | None:
        """None when the request comes from this server's own pages (or a local non-browser client), else why not."""
        host = self.headers.get("Host", "")
        if host not in self.server.allowed_hosts:
            return f"Host {host!r} is not this server"
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.server.allowed_hosts:
            return f"Origin {origin!r} is not this server"
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request"
        return None

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj, default=str).encode(), "application/json")

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self._json({"error": message, **extra}, status)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length", "0") or 0)
        if length > 10_000_000:
            raise ValueError("request body: larger than 10 MB")
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except json.JSONDecodeError as exc:
            raise ValueError(f"request body: not valid JSON ({exc})") from exc

    # -- verbs ----------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        """Static files and the read-only API."""
        if (why := self._origin_ok()) is not None:
            return self._error(HTTPStatus.FORBIDDEN, why)
        url = urlsplit(self.path)
        try:
            self._get(url.path, parse_qs(url.query))
        except Exception as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def do_POST(self) -> None:
        """Validate, save and queue workflows."""
        if (why := self._origin_ok()) is not None:
            return self._error(HTTPStatus.FORBIDDEN, why)
        from diffcore.workflows import GraphError

        path = urlsplit(self.path).path
        try:
            self._post(path, self._body())
        except GraphError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), node=exc.node, port=exc.port)
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        s = self.server
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        if path == "/api/nodes":
            return self._json(s.registry.describe())
        if path == "/api/workflows":
            names = sorted(p.stem for p in s.workflows_dir.glob("*.json")) if s.workflows_dir.is_dir() else []
            return self._json(names)
        if path.startswith("/api/workflows/"):
            f = s.workflows_dir / f"{self._name(path)}.json"
            if not f.is_file():
                return self._error(HTTPStatus.NOT_FOUND, f"no saved workflow {f.stem!r}")
            return self._send(200, f.read_bytes(), "application/json")
        if path == "/api/queue":
            return self._json(s.queue.snapshot())
        if path == "/api/gallery":
            return self._json(self._gallery())
        if path == "/api/file":
            f = s.readable(query.get("path", [""])[0])
            if f is None:
                return self._error(HTTPStatus.NOT_FOUND, "no such file under the served folders")
            kind = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            return self._send(200, f.read_bytes(), kind)
        if path == "/api/bench":
            return self._json(self._bench_list())
        if path.startswith("/api/bench/"):
            rel = path.removeprefix("/api/bench/")
            f = (s.bench_dir / rel / "report.json").resolve()
            if not f.is_relative_to(s.bench_dir) or not f.is_file():
                return self._error(HTTPStatus.NOT_FOUND, f"no bench report {rel!r}")
            report = json.loads(f.read_text(encoding="utf-8"))
            report["folder"] = str(f.parent)
            return self._json(report)
        return self._error(HTTPStatus.NOT_FOUND, f"no page {path}")

    def _post(self, path: str, body: Any) -> None:
        from diffcore.workflows import Workflow, validate

        s = self.server
        if path == "/api/validate":
            from diffcore.workflows import GraphError

            try:
                validate(Workflow.from_dict(body), s.registry)
            except GraphError as exc:
                return self._json({"ok": False, "error": str(exc), "node": exc.node, "port": exc.port})
            return self._json({"ok": True})
        if path.startswith("/api/workflows/"):
            name = self._name(path)
            workflow = Workflow.from_dict(
                body
            )  # the file's shape is checked; a draft may still be incomplete
            workflow.name = name
            write_json(workflow.to_dict(), s.workflows_dir / f"{name}.json")
            return self._json({"saved": name})
        if path == "/api/queue":
            workflow = Workflow.from_dict(body)
            validate(workflow, s.registry)
            return self._json(s.queue.submit(workflow))
        return self._error(HTTPStatus.NOT_FOUND, f"no action {path}")

    # -- helpers --------------------------------------------------------------------------------------------
    def _name(self, path: str) -> str:
        name = path.rsplit("/", 1)[1]
        if not NAME.match(name):
            raise ValueError(f"workflow name: expected letters, digits, '_', '-' or '.', got {name!r}")
        return name

    def _static(self, name: str) -> None:
        f = (STATIC / name).resolve()
        if not f.is_relative_to(STATIC.resolve()) or not f.is_file():
            return self._error(HTTPStatus.NOT_FOUND, f"no file {name}")
        kind = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        extra = {
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self'"
        }
        return self._send(200, f.read_bytes(), kind, extra)

    def _gallery(self) -> list[dict[str, Any]]:
        f = self.server.queue.gallery_file
        if not f.is_file():
            return []
        items = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        seen: set[str] = set()
        out = []
        for item in reversed(items):
            if item["path"] not in seen and Path(item["path"]).is_file():
                seen.add(item["path"])
                out.append(item)
        return out

    def _bench_list(self) -> list[dict[str, Any]]:
        base = self.server.bench_dir
        if not base.is_dir():
            return []
        out = []
        for f in sorted(base.rglob("report.json"), reverse=True):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(data, dict) or "modalities" not in data:
                continue
            out.append({
                "id": str(f.parent.relative_to(base)),
                "started": data.get("started"),
                "quick": data.get("quick"),
                "finished": data.get("finished"),
                "device": (data.get("environment") or {}).get("device"),
                "modalities": [m.get("modality") for m in data["modalities"]],
            })  # fmt: skip
        return out


def make_server(host: str = "127.0.0.1", port: int = 8188, *, root: str | Path = ".", device: str = "auto",
                bench_dir: str | Path = "runs") -> UIServer:  # fmt: skip
    """The UI server bound to ``host:port`` (``port=0``: a free port), not yet serving (call ``serve_forever``)."""
    return UIServer((host, port), root=Path(root), device=device, bench_dir=Path(bench_dir))


def serve(host: str = "127.0.0.1", port: int = 8188, *, root: str | Path = ".", device: str = "auto",
          bench_dir: str | Path = "runs") -> None:  # fmt: skip
    """Serve the UI until interrupted (Ctrl-C), printing its address."""
    server = make_server(host, port, root=root, device=device, bench_dir=bench_dir)
    print(f"diffuse serve: {server.url}  (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {host}: other machines can reach this UI (it has no accounts)", flush=True
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
