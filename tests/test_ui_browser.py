"""The web UI in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright) against
``diffuse serve`` on localhost.

One session, in order: build a graph in the editor (train a tiny image model, a named sampler, sample, save), save
it, run it, watch progress and the sampler's live preview and find the images in the gallery; reload the page and load the saved workflow; run
that same file with ``diffuse run`` and get the same bytes; break the graph and get the error naming the node and
port; open a bench report with its plots. A screenshot of each page is written to ``runs/ui-screenshots/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
    ),
]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[1] / "runs" / "ui-screenshots"
DIFFUSE = Path(sys.executable).with_name("diffuse")
TRAIN_SETTINGS = "batch_size=16\nmodel.width=32\nmodel.depth=1\nmodel.heads=2\ntrain.warmup_steps=1"


def _bench_report(root: Path) -> None:
    """A real report.json (diffcore.bench.run_bench) of a small benchmark that writes a picture."""
    from diffcore.bench import run_bench
    from diffcore.modality import BenchResult, InstalledModality, Modality
    from PIL import Image

    def bench(out_dir: Path, quick: bool) -> BenchResult:
        Image.new("RGB", (32, 32), (200, 60, 60)).save(out_dir / "sample.png")
        return BenchResult(modality="demo", status="ok", summary="a demo benchmark",
                           metrics={"accuracy": 0.82, "fid": 12.5}, targets={"accuracy": (">=", 0.9), "fid": ("<=", 20)},
                           files=["sample.png"])  # fmt: skip

    run_bench(
        [InstalledModality(Modality("demo", "demo", bench=bench), "demo", "0")], root / "runs", quick=True
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    _bench_report(root)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(DIFFUSE), "serve", "--port", "0", "--root", str(root), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    line = proc.stdout.readline()
    assert "diffuse serve: http://127.0.0.1:" in line, line
    url = line.split()[2]
    yield url, root
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = served[1] / "chromium-profile"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1600, "height": 900},
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served[0])
        page.wait_for_selector("#palette-list button")
        yield page
        assert errors == [], errors
        context.close()


def _add(page, node_type: str) -> str:
    page.click(f'#palette-list button[data-type="{node_type}"]')
    return page.locator(".node.selected").get_attribute("data-node")


def _set(page, param: str, value: str) -> None:
    field = page.locator(f'#inspector [data-param="{param}"]')
    if field.evaluate("e => e.tagName") == "SELECT":
        field.select_option(label=value)
    else:
        field.fill(value)


def _link(page, src: str, out: str, dst: str, inp: str) -> None:
    page.hover(f'.port.out[data-node="{src}"][data-port="{out}"]')
    page.mouse.down()
    page.hover(f'.port.in[data-node="{dst}"][data-port="{inp}"]')
    page.mouse.up()


def test_build_run_and_see_the_images_in_the_gallery(page, served):
    _url, root = served
    page.screenshot(path=str(SHOTS / "1-editor-empty.png"))
    train = _add(page, "image.train")
    _set(page, "train.steps", "2")
    _set(page, "settings", TRAIN_SETTINGS)
    sampler = _add(page, "sampler")
    _set(page, "sampler", "ddim")
    _set(page, "steps", "3")
    sample = _add(page, "image.sample")
    _set(page, "num_samples", "4")
    _set(page, "labels", "3")
    save = _add(page, "save.image")
    _set(page, "folder", "out")
    _link(page, train, "pipeline", sample, "pipeline")
    _link(page, sampler, "sampler", sample, "sampler")
    _link(page, sample, "files", save, "files")
    assert page.locator("#wires path").count() == 3
    _link(page, sample, "files", sample, "sampler")  # a files output cannot feed a sampler input
    assert "expects sampler, got files" in page.text_content("#message")
    page.fill("#wf-name", "tiny-browser")
    page.click("#btn-save")
    page.wait_for_selector("#message.ok >> text=saved workflow 'tiny-browser'")
    page.click("#btn-validate")
    page.wait_for_selector("#message.ok >> text=the workflow is valid")
    page.screenshot(path=str(SHOTS / "2-editor-graph.png"))

    page.click("#btn-run")
    page.wait_for_selector("#status-line >> text=/run-1: (queued|running)/")
    page.click("#nav-queue")
    page.wait_for_selector('.run[data-run="run-1"]')
    page.wait_for_selector('.run[data-run="run-1"] .badge.done', timeout=240_000)
    page.screenshot(path=str(SHOTS / "3-queue.png"))
    cells = page.locator('.run[data-run="run-1"] tr td:nth-child(3)').all_text_contents()
    assert cells == ["done"] * 4
    progress = page.locator('.run[data-run="run-1"] td.progress').all_text_contents()
    assert (
        progress[0].strip() == "train 2/2" and progress[2].strip() == "sample ddim 3/3"
    )  # the loops' own progress
    assert page.locator(f'.run[data-run="run-1"] tr[data-node="{sample}"] .previews img').count() >= 4
    live = page.locator(f'.run[data-run="run-1"] tr[data-node="{sample}"] .previews img.live')
    assert live.get_attribute("src").startswith("data:image/png;base64,")  # the sampler's x0 estimate
    assert live.evaluate("i => i.complete && i.naturalWidth") == 4 * 8  # four 8 x 8 digits side by side
    assert "step 3/3" in page.text_content(f'.run[data-run="run-1"] tr[data-node="{sample}"] .live-step')

    page.click("#nav-gallery")
    page.wait_for_selector(".card img")
    images = page.locator(".card img")
    assert images.count() == 5  # grid.png and four samples
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(SHOTS / "4-gallery.png"))
    saved = sorted((root / "out").rglob("*.png"))
    assert len(saved) == 5


def test_reload_the_saved_workflow_and_run_it_unchanged_with_the_cli(page, served):
    url, root = served
    page.goto(url)
    page.wait_for_selector("#palette-list button")
    page.select_option("#wf-list", "tiny-browser")
    page.click("#btn-load")
    page.wait_for_selector("#message.ok >> text=loaded workflow 'tiny-browser'")
    assert page.locator(".node").count() == 4 and page.locator("#wires path").count() == 3
    page.click('.node:has-text("image sample") .node-title')
    assert page.input_value('#inspector [data-param="num_samples"]') == "4"
    page.screenshot(path=str(SHOTS / "5-editor-reloaded.png"))

    file = root / "workflows" / "tiny-browser.json"
    before = {p.name: p.read_bytes() for p in (root / "out").rglob("*.png")}
    for p in (root / "out").rglob("*.png"):
        p.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(DIFFUSE), "run", str(file), "--device", "cpu", "--work-dir", "cli-work", "--quiet"],
                         cwd=root, capture_output=True, text=True, env=env, timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 nodes ran, 0 cached" in run.stdout  # a fresh work folder: everything really ran again
    after = {p.name: p.read_bytes() for p in (root / "out").rglob("*.png")}
    assert after == before  # same seeds, same bytes as the run from the browser
    assert json.loads(file.read_text())["nodes"][0]["position"] is not None


def test_a_broken_graph_gets_the_error_naming_node_and_port(page):
    sample = page.locator('.node:has-text("image sample")').get_attribute("data-node")
    page.click(f'.port.in[data-node="{sample}"][data-port="pipeline"]')  # disconnects it
    assert page.locator("#wires path").count() == 2
    page.click("#btn-run")
    message = (
        f"node '{sample}' (image.sample) input 'pipeline': missing; connect an output of type pipeline:image"
    )
    page.wait_for_selector(f"#message >> text={message}")
    assert page.locator(f'.node.error[data-node="{sample}"] .port.error[data-port="pipeline"]').count() == 1
    page.screenshot(path=str(SHOTS / "6-editor-error.png"))


def test_bench_report_page_with_plots(page):
    page.click("#nav-bench")
    page.wait_for_selector("#bench-body a")
    page.screenshot(path=str(SHOTS / "7-bench-list.png"))
    page.click("#bench-body a")
    page.wait_for_selector("svg.plot")
    assert page.locator("svg.plot").count() == 2  # seconds per modality, the demo's metrics against targets
    assert (
        page.locator("td.notmet").count() == 1 and page.locator("td.met").count() == 1
    )  # accuracy < 0.9, fid <= 20
    page.wait_for_function(
        "() => [...document.querySelectorAll('#bench-body img')].every(i => i.naturalWidth > 0)"
    )
    page.screenshot(path=str(SHOTS / "8-bench-report.png"), full_page=True)


def _media_files(root: Path) -> list[Path]:
    """A CA trace (PDB), a point cloud (ASCII PLY) and a tone (WAV), as the protein, 3D and audio packages write."""
    import math

    import numpy as np
    import soundfile as sf

    pdb = root / "media" / "helix.pdb"
    pdb.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {2.3 * math.cos(1.75 * i):8.3f}{2.3 * math.sin(1.75 * i):8.3f}"
        f"{1.5 * i:8.3f}  1.00  0.00           C"
        for i in range(30)
    ]
    pdb.write_text("\n".join([*lines, "END"]) + "\n")
    ply = root / "media" / "sphere.ply"
    pts = np.random.default_rng(0).normal(size=(500, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    header = ["ply", "format ascii 1.0", "element vertex 500", "property float x", "property float y",
              "property float z", "end_header"]  # fmt: skip
    ply.write_text("\n".join(header + [" ".join(f"{v:.4f}" for v in p) for p in pts]) + "\n")
    wav = root / "media" / "tone.wav"
    sf.write(str(wav), 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000)
    return [pdb, ply, wav]


def test_gallery_plays_audio_and_draws_structures(page, served):
    root = served[1]
    log = root / "runs" / "ui" / "gallery.jsonl"
    with log.open("a") as f:  # as a run's save.structure / save.audio nodes record them
        for p in _media_files(root):
            f.write(json.dumps({"path": str(p), "run": "run-x", "workflow": "media"}) + "\n")
    page.click("#nav-editor")
    page.click("#nav-gallery")
    page.wait_for_selector('.card[data-file$="tone.wav"] audio')
    painted = """(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d')
        .getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"""
    for name in ("helix.pdb", "sphere.ply"):
        sel = f'.card[data-file$="{name}"] canvas'
        page.wait_for_function(f"() => ({painted})('{sel}') > 50")
    page.screenshot(path=str(SHOTS / "9-gallery-media.png"))
