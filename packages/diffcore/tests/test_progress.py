"""Progress display: the quiet switch, plain lines in logs, sampling's bar counting every step."""

from __future__ import annotations

import io

import diffcore
import pytest
import torch
from diffcore import progress
from diffcore.paths import Denoiser, schedules
from diffcore.training.log_writers import ProgressBar


class _Clock:
    """A stand-in for ``time.perf_counter`` that advances ``step`` seconds per call."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def clean_env(monkeypatch):
    """Both switches off; setenv (not delenv, which records nothing for an absent variable) so that what a
    test's configure() sets is undone after it."""
    monkeypatch.setenv(progress.QUIET_ENV, "")
    monkeypatch.setenv(progress.PROGRESS_ENV, "")


def test_switches_follow_the_environment(clean_env, monkeypatch):
    assert not progress.quiet() and not progress.enabled()
    progress.configure(progress=True)
    assert progress.enabled()
    progress.configure(quiet=True)
    assert progress.quiet() and not progress.enabled()
    progress.configure(quiet=None)  # None leaves the switch as it is
    assert progress.quiet()
    monkeypatch.setenv(progress.QUIET_ENV, "no")
    assert not progress.quiet()


def test_configured_restores_the_switches(clean_env):
    with progress.configured(quiet=True, progress=True):
        assert progress.quiet()
    assert not progress.quiet() and not progress.enabled()


def test_plain_lines_are_rate_limited_and_state_counts(clean_env, monkeypatch):
    monkeypatch.setattr(progress.time, "perf_counter", _Clock(1.0))  # one second per call
    out = io.StringIO()  # not a terminal: plain lines
    with progress.Progress(50, "sample euler", every_s=5.0, stream=out) as bar:
        for _ in range(20):
            bar.update()
    lines = out.getvalue().splitlines()
    # each update advances the clock by 1 s (plus 1 s per line written): a line every ~5 s, and a last one
    assert 3 <= len(lines) <= 5, lines
    assert lines[-1].startswith("sample euler 20/50 (40%), ")
    assert "ETA" in lines[-1] and "steps/s" in lines[-1]


def test_short_work_prints_nothing_in_a_log(clean_env):
    out = io.StringIO()
    with progress.Progress(5, "x", stream=out) as bar:
        for _ in range(5):
            bar.update()
    assert out.getvalue() == ""


def test_quiet_silences_progress_and_the_training_bar(clean_env, monkeypatch):
    monkeypatch.setattr(progress.time, "perf_counter", _Clock(100.0))
    progress.configure(quiet=True)
    out = io.StringIO()
    with progress.Progress(3, "x", stream=out) as bar:
        bar.update(3)
    train_bar = ProgressBar(total=10, initial=0, enabled=True, stream=out)
    train_bar.show({"loss": 1.0, "lr": 1e-3})
    assert out.getvalue() == "" and not train_bar.plain and not train_bar.interactive


def test_unknown_total_reports_elapsed(clean_env, monkeypatch):
    monkeypatch.setattr(progress.time, "perf_counter", _Clock(20.0))
    out = io.StringIO()
    with progress.Progress(None, "solve", stream=out) as bar:
        bar.update(4)
    assert out.getvalue().splitlines()[-1].startswith("solve 4 steps, ")


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "ddpm"])
def test_sample_counts_every_step_and_leaves_the_samples_unchanged(clean_env, monkeypatch, sampler):
    den = Denoiser(lambda x, t: 0.3 * x, schedules.get("vp-cosine"), "eps")
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    counted: list[int] = []
    real = progress.Progress

    class Counting(real):
        def close(self) -> None:
            counted.append(self.n)
            super().close()

    monkeypatch.setattr(progress, "Progress", Counting)
    plain = diffcore.sample(den, noise, sampler, 7, generator=torch.Generator().manual_seed(1))
    shown = diffcore.sample(den, noise, sampler, 7, generator=torch.Generator().manual_seed(1), progress=True)
    assert counted == [0, 7]  # off by default in library use; every step counted when asked
    torch.testing.assert_close(shown, plain, rtol=0, atol=0)
    progress.configure(progress=True)  # what the diffuse commands do
    diffcore.sample(den, noise, sampler, 7, generator=torch.Generator().manual_seed(1))
    progress.configure(quiet=True)
    diffcore.sample(den, noise, sampler, 7, generator=torch.Generator().manual_seed(1))
    assert counted == [0, 7, 7, 0]
