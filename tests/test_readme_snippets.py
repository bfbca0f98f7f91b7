"""The root README's Python blocks run as written (issue #36: its snippet once used an undefined ``net``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out.split("\n")
    assert printed[0], "the block prints its results"
    if index == 0:  # "Using the core": the samples' distance to data, then the floor of two data sets
        distance, floor = map(float, printed[0].split())
        assert distance < 3 * floor, printed[0]
