"""The bench report: report.html holds every metric beside its target and verdict and shows every sample by
a relative path (read back with html.parser), report.md and report.json say the same; the structure readers
and the hand-written SVG figures give the values they were given."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from diffcore.bench import load_report, run_bench
from diffcore.bench.figures import ChartRow, fmt, structure_preview, target_chart
from diffcore.bench.samples import Structure, read_structure
from diffcore.io import write_bytes, write_text
from diffcore.modality import BenchResult, InstalledModality, Modality

CA_A = [(1.0, 2.0, 3.0), (4.8, 2.0, 3.0), (4.8, 5.8, 3.0)]
CA_B = [(-1.0, 0.0, 0.5), (-1.0, -3.8, 0.5)]


def _pdb_line(serial: int, name: str, chain: str, res: int, xyz: tuple[float, float, float]) -> str:
    x, y, z = xyz
    return (
        f"ATOM  {serial:5d} {name:<4} ALA {chain}{res:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
    )


def _pdb() -> str:
    lines, serial = ["MODEL        1"], 1
    for chain, cas in (("A", CA_A), ("B", CA_B)):
        for res, xyz in enumerate(cas, 1):
            lines.append(_pdb_line(serial, "N", chain, res, (xyz[0] - 1, xyz[1], xyz[2])))
            lines.append(_pdb_line(serial + 1, "CA", chain, res, xyz))
            serial += 2
    lines += ["ENDMDL", "MODEL        2", _pdb_line(99, "CA", "C", 1, (50.0, 50.0, 50.0)), "ENDMDL", "END"]
    return "\n".join(lines) + "\n"


def _cif() -> str:
    head = ["data_test", "loop_"] + [
        f"_atom_site.{c}"
        for c in ("group_PDB", "id", "label_atom_id", "label_asym_id", "Cartn_x", "Cartn_y", "Cartn_z",
                  "pdbx_PDB_model_num")
    ]  # fmt: skip
    rows = [f"ATOM {i} CA A {x} {y} {z} 1" for i, (x, y, z) in enumerate(CA_A, 1)]
    rows += ['ATOM 9 "O5\'" A 0 0 0 1', "ATOM 10 CA A 9 9 9 2", "#"]
    return "\n".join(head + rows) + "\n"


CLOUD = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, -0.5], [2.0, -1.0, 0.25], [0.5, 3.0, 1.0]])


def _ply_ascii() -> str:
    header = ["ply", "format ascii 1.0", f"element vertex {len(CLOUD)}", "property float x", "property float y",
              "property float z", "property uchar red", "element face 0",
              "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    return "\n".join(header + [f"{x} {y} {z} 200" for x, y, z in CLOUD]) + "\n"


def _ply_binary() -> bytes:
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(CLOUD)}", "property float x",
              "property float y", "property float z", "property float opacity", "end_header"]  # fmt: skip
    body = b"".join(struct.pack("<4f", x, y, z, 0.5) for x, y, z in CLOUD)
    return ("\n".join(header) + "\n").encode() + body


SAMPLES = {
    "grid.png": "img",
    "tone.wav": "audio",
    "clip.mp4": "video",
    "backbone.pdb": "structure",
    "crystal.cif": "structure",
    "cloud.ply": "structure",
    "splats.ply": "structure",
    "samples.txt": "text",
    "metrics.json": "file",
}
METRICS = {"accuracy": 0.93, "frechet": 7.25, "seconds_per_sample": 0.0123, "speedup": 2.5}
TARGETS = {
    "accuracy": (">=", 0.9),
    "frechet": ("<=", 5.0),
    "speedup": (">", 1.0),
    "never_measured": (">=", 1.0),
}
VERDICTS = {"accuracy": "met", "frechet": "not met", "speedup": "met", "never_measured": "missing"}


def _good(out_dir: Path, quick: bool) -> BenchResult:
    write_bytes(out_dir / "grid.png", b"\x89PNG not really")
    write_bytes(out_dir / "tone.wav", b"RIFF")
    write_bytes(out_dir / "clip.mp4", b"mp4")
    write_text(out_dir / "backbone.pdb", _pdb())
    write_text(out_dir / "crystal.cif", _cif())
    write_text(out_dir / "cloud.ply", _ply_ascii())
    write_bytes(out_dir / "splats.ply", _ply_binary())
    write_text(out_dir / "samples.txt", "".join(f"sample line {i} <b>\n" for i in range(30)))
    write_text(out_dir / "metrics.json", json.dumps(METRICS))
    return BenchResult(
        "good", "ok", summary="trained & sampled", metrics=METRICS, targets=TARGETS, files=list(SAMPLES)
    )


def _broken(out_dir: Path, quick: bool) -> BenchResult:
    raise RuntimeError("exploded <on purpose>")


def _item(name: str, bench) -> InstalledModality:
    return InstalledModality(Modality(name=name, description="test", bench=bench), f"diff-{name}", "9.9")


class Page(HTMLParser):
    """Tags with their attributes, table rows as lists of cell texts, and the whole text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][-1] = "".join(self._cell).strip()
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def attrs(self, tag: str, key: str) -> list[str]:
        return [a[key] for t, a in self.tags if t == tag and key in a]

    def row(self, first: str) -> list[str]:
        return next(r for r in self.rows if r and r[0] == first)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    items = [_item("good", _good), _item("bad", _broken), _item("none", None)]
    return run_bench(items, root, quick=True)


def test_html_shows_every_metric_beside_its_target_and_verdict(report):
    page = Page((report.folder / "report.html").read_text())
    for name, value in METRICS.items():
        cells = page.row(name)
        assert cells[1] == fmt(value)
        if name in TARGETS:
            direction, target = TARGETS[name]
            assert cells[2:] == [f"{direction} {target:.4g}", VERDICTS[name]]
        else:
            assert cells[2:] == ["", ""]
    assert page.row("never_measured")[1:] == ["missing", ">= 1", "missing"]
    assert page.row("good")[1:5] == ["diff-good 9.9", "ok", page.row("good")[3], "2/4"]
    assert page.row("bad")[2] == "failed" and "exploded <on purpose>" in "".join(page.text)
    assert page.row("none")[2] == "not-implemented"
    chart = page.attrs("svg", "aria-label")
    assert "good: measured values and targets" in chart


def test_html_shows_each_sample_by_its_kind_with_relative_paths(report):
    html = (report.folder / "report.html").read_text()
    page = Page(html)
    refs = {f"good/{f}" for f in SAMPLES}
    assert set(page.attrs("a", "href")) >= refs | {"bad/error.txt"}
    assert page.attrs("img", "src") == ["good/grid.png"]
    assert page.attrs("audio", "src") == ["good/tone.wav"]
    assert page.attrs("video", "src") == ["good/clip.mp4"]
    assert [t for t, a in page.tags if t == "audio" or t == "video"] and all(
        "controls" in a for t, a in page.tags if t in ("audio", "video")
    )
    previews = [label for label in page.attrs("svg", "aria-label") if label.startswith("preview of")]
    assert previews == [f"preview of good/{f}" for f, kind in SAMPLES.items() if kind == "structure"]
    pdb_svg = re.search(r'aria-label="preview of good/backbone.pdb".*?</svg>', html).group(0)
    assert pdb_svg.count("<polyline") == 2  # chains A and B, C-alpha traces; model 2 left out
    assert "sample line 11 &lt;b&gt;" in html and "sample line 12" not in html  # the first 12 lines
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe")]
    external = [u for u in page.attrs("a", "href") + page.attrs("img", "src") if re.match(r"[a-z]+:|//|/", u)]
    assert not external


def test_the_report_folder_can_be_copied_with_its_samples(report, tmp_path: Path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(report.folder, copy)
    page = Page((copy / "report.html").read_text())
    links = page.attrs("a", "href") + page.attrs("img", "src") + page.attrs("audio", "src")
    files = [u for u in links if not u.startswith("#")]
    assert files and all((copy / u).is_file() for u in files)


def test_markdown_and_json_hold_the_same_values(report):
    md = (report.folder / "report.md").read_text()
    assert "| accuracy | 0.93 | >= 0.9 | met |" in md
    assert "| frechet | 7.25 | <= 5 | not met |" in md
    assert "| never_measured | missing | >= 1 | missing |" in md
    assert "[good/clip.mp4](good/clip.mp4)" in md and "Error: `RuntimeError: exploded <on purpose>`" in md
    data = json.loads((report.folder / "report.json").read_text())
    good = next(m for m in data["modalities"] if m["modality"] == "good")
    assert good["metrics"] == METRICS and good["verdicts"] == VERDICTS
    assert good["targets"]["frechet"] == {"direction": "<=", "value": 5.0}
    assert data["finished"] is True and data["resume"] is None and data["ended"] >= data["started"]
    env = data["environment"]
    assert {"device", "python", "torch", "diffcore"} <= set(env) and env["packages"][
        "good"
    ] == "diff-good 9.9"
    assert load_report(report.folder).results == report.results


# ---------------------------------------------------------------- structure readers and figures


def test_pdb_and_cif_give_the_c_alpha_trace_of_the_first_model(tmp_path: Path):
    pdb = read_structure(write_text(tmp_path / "x.pdb", _pdb()))
    assert pdb.trace and len(pdb.chains) == 2
    np.testing.assert_allclose(pdb.chains[0], CA_A)
    np.testing.assert_allclose(pdb.chains[1], CA_B)
    cif = read_structure(write_text(tmp_path / "x.cif", _cif()))
    assert cif.trace and len(cif.chains) == 1
    np.testing.assert_allclose(cif.chains[0], CA_A)


def test_a_structure_without_c_alpha_is_a_cloud_of_all_atoms(tmp_path: Path):
    lines = [_pdb_line(i, "C1", "A", 1, tuple(p)).replace("ATOM  ", "HETATM") for i, p in enumerate(CLOUD, 1)]
    s = read_structure(write_text(tmp_path / "ligand.pdb", "\n".join(lines)))
    assert not s.trace
    np.testing.assert_allclose(s.chains[0], CLOUD, atol=1e-3)


def test_ply_vertices_ascii_and_binary(tmp_path: Path):
    for name, data in (("a.ply", _ply_ascii().encode()), ("b.ply", _ply_binary())):
        s = read_structure(write_bytes(tmp_path / name, data))
        assert not s.trace
        np.testing.assert_allclose(s.chains[0], CLOUD, rtol=1e-6)


@pytest.mark.parametrize(
    "data",
    [
        b"not a structure at all",
        b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\n"
        b"element vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n3 0 0 0\n0 0 0\n",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
    ],
)
def test_files_the_readers_do_not_understand_get_no_preview(tmp_path: Path, data: bytes):
    assert read_structure(write_bytes(tmp_path / "odd.ply", data)) is None
    assert read_structure(write_bytes(tmp_path / "odd.pdb", data)) is None


def _points(svg: str) -> np.ndarray:
    coords = re.search(r'points="([^"]+)"', svg).group(1)
    return np.array([[float(v) for v in p.split(",")] for p in coords.split()])


def test_preview_projects_a_planar_structure_without_distorting_it():
    angle = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    ring = np.stack([3 * np.cos(angle), np.sin(angle), np.zeros_like(angle)], axis=1)
    tilt = np.array([[1, 0, 0], [0, math.cos(0.7), -math.sin(0.7)], [0, math.sin(0.7), math.cos(0.7)]])
    svg = structure_preview(Structure([ring @ tilt.T + 5.0], trace=True), "ring", size=180)
    flat = _points(svg)
    true = np.linalg.norm(ring[:, None] - ring[None], axis=-1)[np.triu_indices(12, 1)]
    drawn = np.linalg.norm(flat[:, None] - flat[None], axis=-1)[np.triu_indices(12, 1)]
    ratio = drawn / true
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=0.02)  # one scale for every distance
    assert flat.min() >= 0 and flat.max() <= 180


def test_target_chart_draws_value_and_target_on_one_scale_in_the_verdicts_colour():
    svg = target_chart(
        [ChartRow("acc", 0.5, ">=", 1.0, "not met"), ChartRow("fid", 2.0, "<=", 4.0, "met")], "t"
    )
    bars = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="12" fill="(#\w+)"/>', svg)
    marks = [float(x) for x in re.findall(r'<line x1="([\d.]+)"', svg)]
    for (x0, w, colour), mark, verdict in zip(bars, marks, ("not met", "met")):
        zero, end = float(x0), float(x0) + float(w)
        assert (mark - zero) / (end - zero) == pytest.approx(2.0, rel=0.01)  # target is twice the value
        assert colour == {"met": "#2e7d32", "not met": "#c62828"}[verdict]
    assert "(target &gt;= 1)" in svg and "(target &lt;= 4)" in svg
