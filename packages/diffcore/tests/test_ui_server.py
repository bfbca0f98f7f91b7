"""The web UI's server (diffcore.ui.server) over real HTTP: pages and API, the Host / Origin checks that refuse
other origins, files served only from its folders, workflows saved and read back, bad graphs refused with the node
and port, and bench reports listed from real ``report.json`` files."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from diffcore.bench import run_bench
from diffcore.modality import BenchResult, InstalledModality, Modality
from diffcore.ui.server import make_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    (root / "secret.txt").write_text("inside")

    def bench(out_dir: Path, quick: bool) -> BenchResult:
        return BenchResult(
            modality="demo", status="ok", metrics={"score": 0.75}, targets={"score": (">=", 0.5)}
        )

    demo = InstalledModality(Modality("demo", "a demo", bench=bench), distribution="demo", version="0")
    run_bench([demo], root / "runs", quick=True)
    srv = make_server("127.0.0.1", 0, root=root, device="cpu")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(srv, path: str, body=None, headers: dict | None = None) -> tuple[int, bytes]:
    port = srv.server_address[1]
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_page_and_its_assets_are_served(server):
    status, body = _request(server, "/")
    assert status == 200 and b'src="/static/app.js"' in body
    for asset in ("app.js", "app.css"):
        assert _request(server, f"/static/{asset}")[0] == 200
    nodes = json.loads(_request(server, "/api/nodes")[1])
    assert {"sampler", "save.image", "image.sample"} <= {n["name"] for n in nodes}


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Host": "evil.example:80"}, "Host 'evil.example:80' is not this server"),
        ({"Origin": "http://evil.example"}, "Origin 'http://evil.example' is not this server"),
        ({"Sec-Fetch-Site": "cross-site"}, "cross-site request"),
    ],
)
def test_requests_from_other_origins_are_refused(server, headers, why):
    for path, body in (("/api/workflows", None), ("/api/queue", {"nodes": []})):
        status, raw = _request(server, path, body, headers)
        assert status == 403 and json.loads(raw)["error"] == why


def test_the_same_origin_is_accepted(server):
    port = server.server_address[1]
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert _request(server, "/api/workflows", headers={"Origin": origin})[0] == 200


def test_files_are_served_only_from_the_served_folders(server):
    assert _request(server, "/api/file?path=secret.txt") == (200, b"inside")
    assert _request(server, "/api/file?path=../../../../etc/passwd")[0] == 404
    assert _request(server, "/api/file?path=/etc/passwd")[0] == 404
    assert _request(server, "/static/../server.py")[0] == 404


def test_a_workflow_saves_and_reads_back_and_a_bad_name_is_refused(server):
    wf = {"format": "diffcore-workflow", "version": 1, "nodes": [
        {"id": "s", "type": "sampler", "params": {"steps": 4}, "inputs": {}, "position": [1, 2]}]}  # fmt: skip
    assert _request(server, "/api/workflows/mine", wf)[0] == 200
    back = json.loads(_request(server, "/api/workflows/mine")[1])
    assert back["nodes"] == wf["nodes"] and back["name"] == "mine"
    assert "mine" in json.loads(_request(server, "/api/workflows")[1])
    status, raw = _request(server, "/api/workflows/..%2Fup", wf)
    assert status == 400 and "workflow name" in json.loads(raw)["error"]


def test_a_broken_graph_is_refused_naming_the_node_and_port(server):
    wf = {"nodes": [{"id": "keep", "type": "save.image", "params": {"folder": "x"}}]}
    status, raw = _request(server, "/api/queue", wf)
    err = json.loads(raw)
    assert status == 400 and (err["node"], err["port"]) == ("keep", "files")
    assert err["error"] == "node 'keep' (save.image) input 'files': missing; connect an output of type files"
    checked = json.loads(_request(server, "/api/validate", wf)[1])
    assert checked["ok"] is False and checked["node"] == "keep"
    assert json.loads(_request(server, "/api/queue")[1]) == []  # nothing was queued


def test_bench_reports_are_listed_and_read(server):
    reports = json.loads(_request(server, "/api/bench")[1])
    assert len(reports) == 1 and reports[0]["modalities"] == ["demo"]
    report = json.loads(_request(server, "/api/bench/" + reports[0]["id"])[1])
    demo = report["modalities"][0]
    assert demo["metrics"] == {"score": 0.75} and demo["verdicts"] == {"score": "met"}
    assert _request(server, "/api/bench/../../etc")[0] == 404


def test_the_queue_shows_the_sampler_s_live_preview_while_the_node_runs(server):
    """A node that samples (diffcore.sample, 6 Euler steps) with an x0-predicting network whose estimate is a
    fixed picture; the run record read *inside* the node, after sampling, already holds the preview (step 6/6),
    and that PNG is the picture."""
    Image = pytest.importorskip("PIL.Image")
    import base64
    import io
    import time

    import numpy as np
    import torch
    from diffcore import sample
    from diffcore.paths import Denoiser
    from diffcore.workflows import NodeType, Port

    picture = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    net = lambda x, t, **cond: picture.expand(x.shape[0], -1, -1, -1)  # noqa: E731
    seen: dict = {}

    def run(call):
        sample(Denoiser(net, "rectified-flow", "x0"), torch.randn(2, 3, 8, 8), "euler", 6)
        seen.update(next(r for r in server.queue.snapshot() if r["name"] == "preview-demo")["nodes"]["draw"])
        return {"files": call.out_dir}

    if "demo.preview" not in server.registry:
        server.registry.add(NodeType("demo.preview", "demo", "demo", run, outputs=(Port("files", "files"),),
                                     writes_files=True, cacheable=False))  # fmt: skip
    wf = {"name": "preview-demo", "nodes": [{"id": "draw", "type": "demo.preview"}]}
    status, raw = _request(server, "/api/queue", wf)
    assert status == 200, raw
    run_id = json.loads(raw)["id"]
    for _ in range(200):
        run_state = next(r for r in json.loads(_request(server, "/api/queue")[1]) if r["id"] == run_id)
        if run_state["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert run_state["status"] == "done", run_state["error"]
    assert seen["state"] == "running" and (seen["preview_step"], seen["preview_total"]) == (6, 6)
    assert run_state["nodes"]["draw"]["preview"] == seen["preview"]  # kept after the node finished
    png = base64.b64decode(seen["preview"].removeprefix("data:image/png;base64,"))
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(png)).convert("RGB")))
    expected = ((picture[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    assert pixels.shape == (8, 16, 3)  # the two samples side by side
    assert torch.equal(pixels[:, :8], expected) and torch.equal(pixels[:, 8:], expected)
