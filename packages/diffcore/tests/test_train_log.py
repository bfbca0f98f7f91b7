"""Reading a Trainer run's JSONL log back: all records, and the steady-state throughput."""

from __future__ import annotations

import pytest
from diffcore.training import read_run_log, steady_samples_per_sec
from diffcore.training.log_writers import LOG_FILE, JsonlLog


def test_steady_samples_per_sec_is_the_median_of_late_windows(tmp_path) -> None:
    log = JsonlLog(tmp_path / LOG_FILE)
    for step, sps in ((10, 5.0), (20, 90.0), (30, 110.0), (40, 100.0)):  # step 10: start-up
        log.write({"step": step, "loss": 1.0, "samples_per_sec": sps})
    log.write({"step": 40, "eval": 0.5})  # a record without throughput is ignored
    assert len(read_run_log(tmp_path)) == 5
    assert steady_samples_per_sec(tmp_path, after_step=10) == 100.0
    assert steady_samples_per_sec(tmp_path, after_step=30) == 100.0
    with pytest.raises(ValueError, match="after_step"):
        steady_samples_per_sec(tmp_path, after_step=40)
    assert read_run_log(tmp_path / "missing") == []
