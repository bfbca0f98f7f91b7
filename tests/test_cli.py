"""The ``diffuse`` command line and the bench runner, exercised as a user would."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from diffcore.bench import load_report, run_bench, select
from diffcore.cli import build_app
from diffcore.io import write_text
from diffcore.modality import BenchContext, BenchResult, InstalledModality, Modality, discover
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def _project_version(distribution: str) -> str:
    """The version a package's own pyproject.toml declares (what an installed workspace must report)."""
    import tomllib

    return tomllib.loads((ROOT / "packages" / distribution / "pyproject.toml").read_text())["project"][
        "version"
    ]


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
    html = (report.folder / "report.html").read_text()
    assert '<img src="good/grid.png"' in html and "exploded on purpose" in html
    assert len(report.failed) == 1


def test_select_names_and_errors():
    items = {"a": _item("a", None), "b": _item("b", None)}
    assert [i.modality.name for i in select(items, [])] == ["a", "b"]
    assert [i.modality.name for i in select(items, ["b"])] == ["b"]
    with pytest.raises(ValueError, match="modality"):
        select(items, ["c"])


def test_bench_command_writes_report_and_exit_code(tmp_path: Path, monkeypatch):
    # every workspace package now has a real (minutes-long) benchmark: a modality without one returns at once
    monkeypatch.setattr("diffcore.cli.discover", lambda: {"none": _item("none", None)})
    result = CliRunner().invoke(build_app(), ["bench", "--quick", "--out", str(tmp_path), "none"])
    assert result.exit_code == 0, result.output
    reports = list(tmp_path.glob("bench-*/report.json"))
    assert len(reports) == 1
    data = json.loads(reports[0].read_text())
    assert [m["modality"] for m in data["modalities"]] == ["none"]


def test_python_dash_m_not_needed():
    # the console script is installed in the environment's bin folder next to the interpreter
    assert (Path(sys.executable).parent / "diffuse").exists()


def _stepping(out_dir: Path, quick: bool, context: BenchContext = BenchContext()) -> BenchResult:
    """Five steps of 0.2 s, the count saved after each; stops at a step when its context says so."""
    done = int((out_dir / "done").read_text()) if context.resume else 0
    first = done
    for step in range(done, 5):
        context.stop_if_due(f"{step} of 5 steps")
        if step == 1 and os.environ.get("BENCH_TEST_SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        write_text(out_dir / "done", str(step + 1))
    return BenchResult("steps", "ok", metrics={"steps": 5.0, "steps_this_call": float(5 - first)})


@pytest.fixture
def stepping(monkeypatch):
    item = InstalledModality(Modality(name="steps", description="test", bench=_stepping), "diff-steps", "1.0")
    monkeypatch.setattr("diffcore.cli.discover", lambda: {"steps": item})


def test_bench_max_minutes_stops_cleanly_and_resume_finishes(tmp_path: Path, stepping):
    runner = CliRunner()
    result = runner.invoke(build_app(), ["bench", "--out", str(tmp_path), "--max-minutes", "0.01"])
    assert result.exit_code == 3, result.output
    assert "unfinished (time budget)" in result.output and "--resume" in result.output
    (folder,) = tmp_path.glob("bench-*")
    assert load_report(folder).result("steps").status == "unfinished"

    result = runner.invoke(build_app(), ["bench", "--resume", str(folder)])
    assert result.exit_code == 0, result.output
    steps = load_report(folder).result("steps")
    assert steps.status == "ok" and 0 < steps.metrics["steps_this_call"] < 5


def test_bench_stops_at_a_checkpoint_on_sigterm(tmp_path: Path, stepping, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_SIGTERM", "1")
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(build_app(), ["bench", "--out", str(tmp_path)])
    assert result.exit_code == 3, result.output
    assert "unfinished (stop requested)" in result.output
    (folder,) = tmp_path.glob("bench-*")
    assert load_report(folder).result("steps").summary == "2 of 5 steps"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_sigterm_ends_the_process_at_once():
    code = (
        "import os, signal, time\n"
        "from diffcore.cli import _stop_on_sigterm\n"
        "with _stop_on_sigterm() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print(stop(), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "    print('survived')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True"] and done.returncode == -signal.SIGTERM


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-minutes", "0"], "expected a positive number of minutes"),
        (["--resume", "{tmp}/nothing-here"], "expected a folder written by diffuse bench"),
        (["--resume", "{run}", "--quick"], "is a full one"),
        (["--resume", "{run}", "other"], "resume it without naming modalities"),
    ],
)
def test_bench_options_name_what_is_wrong(tmp_path: Path, stepping, args, message):
    run = run_bench([InstalledModality(Modality("steps", "t", bench=_stepping), "d", "1")], tmp_path, False)
    args = [a.format(tmp=tmp_path, run=run.folder) for a in args]
    result = CliRunner().invoke(build_app(), ["bench", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())  # rich wraps long lines


def test_diffuse_help_loads_no_torch_and_lists_every_modality_with_its_commands():
    """``diffuse --help`` stays fast (under a second on a laptop) because building the app imports no torch,
    no model code and no benchmark runner: the modality packages load their pipelines on first use."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from diffcore.cli import build_app\n"
        "out = CliRunner().invoke(build_app(), ['--help']).output\n"
        "heavy = [m for m in ('torch', 'numpy', 'accelerate', 'transformers', 'diffcore.bench') if m in sys.modules]\n"
        "print(heavy)\n"
        "print(out)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, _, help_text = out.partition("\n")
    assert heavy == "[]", f"diffuse --help imported {heavy}"
    help_text = " ".join(help_text.replace("│", " ").split())  # undo rich's box and wrapping
    for name in EXPECTED:
        assert name in help_text
    assert "Commands: train, sample, evaluate, edit, lora, control" in help_text
