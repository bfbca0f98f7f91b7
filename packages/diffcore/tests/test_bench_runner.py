"""The bench runner: a run that is cut (a stop, a time budget, a killed call) continues with resume_bench from
its checkpoints to the result an uninterrupted run gives; the contract's BenchContext, Target and BenchResult."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from diffcore.bench import load_report, resume_bench, run_bench
from diffcore.io import write_json, write_text
from diffcore.modality import (
    BenchContext,
    BenchResult,
    BenchStopped,
    InstalledModality,
    Modality,
    Target,
    takes_context,
)


class Killed(BaseException):
    """Stands for the machine cutting the call: nothing in the runner catches it."""


class Counting:
    """A resumable benchmark of ``steps`` steps of a linear congruential generator, each depending on all
    before it; it saves its state after every step and stops when its context says so."""

    def __init__(self, name: str = "count", steps: int = 8, sleep: float = 0.0, kill_at: int | None = None):
        self.name, self.steps, self.sleep, self.kill_at = name, steps, sleep, kill_at
        self.resumed: list[bool] = []  # context.resume of each call
        self.steps_run = 0

    def __call__(self, out_dir: Path, quick: bool, context: BenchContext = BenchContext()) -> BenchResult:
        self.resumed.append(context.resume)
        state_file = out_dir / "state.json"
        state = (
            json.loads(state_file.read_text()) if context.resume else {"step": 0, "x": 12345, "total": 0.0}
        )
        while state["step"] < self.steps:
            if context.should_stop():
                return BenchResult(self.name, "unfinished", summary=f"step {state['step']} of {self.steps}")
            if state["step"] == self.kill_at:
                self.kill_at = None
                raise Killed
            x = (1103515245 * state["x"] + 12345) % 2**31
            state = {"step": state["step"] + 1, "x": x, "total": state["total"] + x / 2**31}
            self.steps_run += 1
            time.sleep(self.sleep)
            write_json(state, state_file)
        write_text(out_dir / "samples.txt", f"{state['x']}\n")
        return BenchResult(
            self.name,
            "ok",
            metrics={"total": state["total"], "last": float(state["x"])},
            targets={"total": (">=", 1.0)},
            files=["samples.txt"],
        )


class Plain:
    """A benchmark of the original signature ``bench(out_dir, quick)``, counting its calls."""

    def __init__(self, name: str, fail: bool = False):
        self.name, self.fail, self.calls = name, fail, 0

    def __call__(self, out_dir: Path, quick: bool) -> BenchResult:
        self.calls += 1
        if self.fail:
            raise RuntimeError("exploded on purpose")
        return BenchResult(self.name, "ok", metrics={"quick": float(quick)})


def _item(name: str, bench) -> InstalledModality:
    return InstalledModality(Modality(name=name, description="test", bench=bench), f"diff-{name}", "9.9")


def _uninterrupted(tmp_path: Path) -> tuple[BenchResult, str]:
    bench = Counting()
    report = run_bench([_item("count", bench)], tmp_path / "whole", quick=False)
    assert bench.steps_run == 8 and report.finished
    return report.result("count"), (report.folder / "count" / "samples.txt").read_text()


def test_a_stopped_run_resumes_from_its_checkpoints_to_the_uninterrupted_result(tmp_path: Path):
    before, counting, after = Plain("before", fail=True), Counting(), Plain("after")
    items = [_item("before", before), _item("count", counting), _item("after", after)]
    installed = {i.modality.name: i for i in items}

    report = run_bench(items, tmp_path, quick=False, stop=lambda: counting.steps_run >= 3)
    assert [r.status for r in report.results] == ["failed", "unfinished", "pending"]
    assert report.result("count").summary == "step 3 of 8"
    assert not report.finished and report.calls[-1].stopped == "stop requested"
    saved = json.loads((report.folder / "report.json").read_text())
    assert saved["finished"] is False and saved["resume"] == f"diffuse bench --resume {report.folder}"

    report = resume_bench(report.folder, installed)
    assert report.finished and [r.status for r in report.results] == ["failed", "ok", "ok"]
    assert before.calls == 1 and after.calls == 1  # the failed benchmark is kept, not run again
    assert counting.resumed == [False, True] and counting.steps_run == 8  # continued, not redone
    whole, samples = _uninterrupted(tmp_path)
    assert report.result("count").metrics == whole.metrics
    assert (report.folder / "count" / "samples.txt").read_text() == samples
    assert report.result("count").files == ["count/samples.txt"]
    assert [c.stopped for c in report.calls] == ["stop requested", None]
    assert report.ended == report.calls[-1].ended and report.started == report.calls[0].started


def test_a_time_budget_stops_at_a_checkpoint_and_leaves_the_next_benchmark_pending(tmp_path: Path):
    counting, after = Counting(steps=8, sleep=0.2), Plain("after")
    items = [_item("count", counting), _item("after", after)]
    report = run_bench(items, tmp_path, quick=False, max_seconds=0.5)
    assert [r.status for r in report.results] == ["unfinished", "pending"]
    assert 1 <= counting.steps_run < 8 and after.calls == 0
    assert report.calls[-1].stopped == "time budget"

    report = resume_bench(report.folder, {i.modality.name: i for i in items})
    assert report.finished and counting.steps_run == 8 and after.calls == 1
    assert report.result("count").metrics == _uninterrupted(tmp_path)[0].metrics
    assert report.result("count").seconds >= 8 * 0.2  # both calls' time


def test_a_call_cut_mid_benchmark_leaves_it_running_and_resume_continues_it(tmp_path: Path):
    counting = Counting(kill_at=5)
    item = _item("count", counting)
    with pytest.raises(Killed):
        run_bench([item], tmp_path, quick=False)
    (folder,) = tmp_path.glob("bench-*")
    cut = load_report(folder)
    assert cut.result("count").status == "running" and not cut.finished

    report = resume_bench(folder, {"count": item})
    assert counting.resumed == [False, True] and counting.steps_run == 8
    assert report.result("count").metrics == _uninterrupted(tmp_path)[0].metrics


def test_ctrl_c_marks_the_benchmark_unfinished_and_writes_the_report(tmp_path: Path):
    def interrupted(out_dir: Path, quick: bool) -> BenchResult:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench([_item("slow", interrupted)], tmp_path, quick=True)
    (folder,) = tmp_path.glob("bench-*")
    report = load_report(folder)
    assert report.result("slow").status == "unfinished" and report.calls[-1].stopped == "interrupted"


def test_benchmarks_of_the_original_signature_run_and_may_raise_bench_stopped(tmp_path: Path):
    def stops(out_dir: Path, quick: bool) -> BenchResult:
        raise BenchStopped("leg 1 of 3 done")

    plain = Plain("plain")
    report = run_bench([_item("plain", plain), _item("stops", stops)], tmp_path, quick=True)
    assert report.result("plain").metrics == {"quick": 1.0}
    stopped = report.result("stops")
    assert (stopped.status, stopped.summary) == ("unfinished", "leg 1 of 3 done")
    assert report.calls[-1].stopped == "a benchmark stopped at a checkpoint"


def test_resume_names_what_is_wrong(tmp_path: Path):
    with pytest.raises(ValueError, match=r"resume: expected a folder written by diffuse bench"):
        resume_bench(tmp_path, {})
    counting = Counting()
    report = run_bench([_item("count", counting)], tmp_path, quick=False, stop=lambda: True)
    with pytest.raises(ValueError, match=r"still has to run \['count'\], not installed here"):
        resume_bench(report.folder, {})


def test_a_finished_run_resumed_runs_nothing_again(tmp_path: Path):
    plain = Plain("plain")
    report = run_bench([_item("plain", plain)], tmp_path, quick=True)
    again = resume_bench(report.folder, {"plain": _item("plain", plain)})
    assert plain.calls == 1 and again.finished and len(again.calls) == 2


# ---------------------------------------------------------------- the contract's types


def test_context_says_when_to_stop():
    assert not BenchContext().should_stop() and BenchContext().seconds_left() == math.inf
    assert BenchContext(deadline=time.monotonic() - 1).should_stop()
    assert not BenchContext(deadline=time.monotonic() + 60).should_stop()
    assert BenchContext(stop_requested=lambda: True).should_stop()
    with pytest.raises(BenchStopped, match="epoch 3"):
        BenchContext(deadline=time.monotonic() - 1).stop_if_due("epoch 3")
    BenchContext().stop_if_due("never")


def test_takes_context_tells_resumable_benchmarks_apart():
    def plain(out_dir, quick): ...
    def resumable(out_dir, quick, context=BenchContext()): ...
    def open_ended(out_dir, quick, **kw): ...

    assert (takes_context(plain), takes_context(resumable), takes_context(open_ended)) == (False, True, True)


@pytest.mark.parametrize(
    ("direction", "target", "value", "verdict"),
    [
        (">=", 0.9, 0.9, "met"),
        (">=", 0.9, 0.89, "not met"),
        ("<=", 5, 4.0, "met"),
        ("<=", 5, 6.0, "not met"),
        (">", 1, 1.0, "not met"),
        ("<", 1, 0.5, "met"),
        (">=", 0.9, float("nan"), "missing"),
        (">=", 0.9, None, "missing"),
    ],
)
def test_targets_give_met_not_met_or_missing(direction, target, value, verdict):
    metrics = {} if value is None else {"m": value}
    result = BenchResult("x", "ok", metrics=metrics, targets={"m": (direction, target)})
    assert result.targets["m"] == Target(direction, target)
    assert result.verdicts() == {"m": verdict}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": {"acc": ("=>", 1.0)}}, r"targets\['acc'\]: direction: expected one of"),
        ({"targets": {"acc": ">= 1"}}, r"targets\['acc'\]: expected \(direction, value\)"),
        ({"targets": {"acc": (">=", "high")}}, r"targets\['acc'\]: value: expected a number"),
        ({"status": "done"}, r"status: expected one of"),
    ],
)
def test_bad_results_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BenchResult(**{"modality": "x", "status": "ok", **kwargs})


def test_result_round_trips_through_its_dict():
    result = BenchResult("x", "ok", "s", 1.5, {"a": 1.0}, ["x/f.png"], None, {"a": (">=", 0.5)})
    assert BenchResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
