"""The ``diffuse`` command line and the bench runner, exercised as a user would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from diffcore.bench import run_bench, select
from diffcore.cli import build_app
from diffcore.modality import BenchResult, InstalledModality, Modality, discover
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def _project_version(distribution: str) -> str:
    """The version a package's own pyproject.toml declares (what an installed workspace must report)."""
    import tomllib

    return tomllib.loads((ROOT / "packages" / distribution / "pyproject.toml").read_text())["project"]["version"]


EXPECTED = {"image", "video", "audio", "3d", "protein", "materials", "language", "timeseries"}


def test_every_workspace_modality_is_discovered_with_its_version():
    installed = discover()
    assert set(installed) == EXPECTED
    for item in installed.values():
        assert item.version == _project_version(item.distribution)
        assert item.distribution.startswith("diff-")


def test_help_and_list_run_as_a_console_script():
    out = subprocess.run(["diffuse", "--help"], capture_output=True, text=True, check=True).stdout
    assert "bench" in out and "list" in out
    out = subprocess.run(["diffuse", "list"], capture_output=True, text=True, check=True).stdout
    for name in EXPECTED:
        assert name in out


def test_bench_rejects_unknown_modality():
    result = CliRunner().invoke(build_app(), ["bench", "--quick", "no-such-modality"])
    assert result.exit_code != 0
    assert "no-such-modality" in result.output


def _item(name, bench):
    return InstalledModality(Modality(name=name, description="test", bench=bench), f"diff-{name}", "9.9")


def test_bench_report_records_success_failure_and_missing(tmp_path: Path):
    def ok(out_dir: Path, quick: bool) -> BenchResult:
        (out_dir / "grid.png").write_bytes(b"png")
        return BenchResult(
            modality="good", status="ok", summary="trained", metrics={"acc": 0.9}, files=["grid.png"]
        )

    def broken(out_dir: Path, quick: bool) -> BenchResult:
        raise RuntimeError("exploded on purpose")

    items = [_item("good", ok), _item("bad", broken), _item("none", None)]
    report = run_bench(items, tmp_path, quick=True)
    data = json.loads((report.folder / "report.json").read_text())
    status = {m["modality"]: m["status"] for m in data["modalities"]}
    assert status == {"good": "ok", "bad": "failed", "none": "not-implemented"}
    bad = next(m for m in data["modalities"] if m["modality"] == "bad")
    assert "exploded on purpose" in bad["error"]
    assert (report.folder / "bad" / "error.txt").read_text().count("RuntimeError") >= 1
    md = (report.folder / "report.md").read_text()
    assert "## good" in md and "[good/grid.png](good/grid.png)" in md and "| acc | 0.9 |" in md
    assert len(report.failed) == 1


def test_select_names_and_errors():
    items = {"a": _item("a", None), "b": _item("b", None)}
    assert [i.modality.name for i in select(items, [])] == ["a", "b"]
    assert [i.modality.name for i in select(items, ["b"])] == ["b"]
    with pytest.raises(ValueError, match="modality"):
        select(items, ["c"])


def test_bench_command_writes_report_and_exit_code(tmp_path: Path):
    result = CliRunner().invoke(build_app(), ["bench", "--quick", "--out", str(tmp_path), "video"])
    assert result.exit_code == 0, result.output
    reports = list(tmp_path.glob("bench-*/report.json"))
    assert len(reports) == 1
    data = json.loads(reports[0].read_text())
    assert [m["modality"] for m in data["modalities"]] == ["video"]


def test_python_dash_m_not_needed():
    # the console script is installed in the environment's bin folder next to the interpreter
    assert (Path(sys.executable).parent / "diffuse").exists()
