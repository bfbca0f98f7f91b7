"""Every number docs/*.md and the READMEs quote beside a result file is in that file
(``benchmarks/check_doc_numbers.py``; issue #24: wrong or unbacked numbers had crept into the docs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "check_doc_numbers.py"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_doc_numbers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _problems(checker, tmp_path: Path, text: str) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return [p.message for p in checker.check_document(page)[0]]


def test_every_number_quoted_beside_a_result_file_is_in_it(checker):
    problems, _ = checker.check()
    assert not problems, "\n".join(map(str, problems))


def test_the_pages_checked_are_the_docs_and_every_readme(checker):
    names = {str(p.relative_to(ROOT)) for p in checker.documents()}
    assert {"README.md", "docs/diffcore.md", "docs/diff-protein.md", "docs/few_step.md"} <= names
    assert "packages/diff-image/README.md" in names and "packages/diffcore/README.md" in names


def test_a_number_rounds_to_the_precision_quoted(checker):
    assert checker.matches("0.909", 931 / 1024)
    assert not checker.matches("0.910", 931 / 1024)  # issue #24: the protein docs rounded 0.9092 up
    assert checker.matches("1.92", 1.9246) and not checker.matches("1.93", 1.9246)  # DDP, compiled
    assert checker.matches("58.5", 0.5847, percent=True)
    assert checker.matches("48", 0.04819)  # seconds quoted as ms


def test_the_mismatches_of_issue_24_are_caught(checker, tmp_path):
    wrong = [
        "Compiled DDP scales 1.93x (`ddp_throughput-dit_b_2-b256-compile-2proc-h100.json`).",
        "Clash-free 0.910 over the four draws (`protein_sampling_variants-64k-seed3-cpu.json`).",
        "Unguided class accuracy 0.900 (`diffuse_bench_image-quick-cpu.json`).",
        "iCT, a second seed: 0.195 / 0.183 / 0.162 (`few_step_gmm-cpu.json`).",
    ]
    for sentence in wrong:
        assert _problems(checker, tmp_path, sentence), sentence


def _overhead(sampler: str) -> float:
    """A value of the committed ``sampler_overhead-h100.json`` (the tests follow the file when it is re-measured)."""
    rows = json.loads((ROOT / "benchmarks/results/sampler_overhead-h100.json").read_text())["rows"]
    return next(r["overhead_ms_per_step"] for r in rows if r["sampler"] == sampler)


def test_a_number_held_by_the_cited_file_passes_and_one_it_does_not_hold_fails(checker, tmp_path):
    ddim, unipc = f"{_overhead('ours:ddim'):.3f}", f"{_overhead('ours:unipc'):.3f}"
    page = f"DDIM overhead {ddim} ms a step and UniPC {unipc} (`sampler_overhead-h100.json`)."
    assert _problems(checker, tmp_path, page) == []
    wrong = f"{_overhead('ours:unipc') * 1.5:.3f}"
    problems = _problems(checker, tmp_path, page.replace(unipc, wrong))
    assert len(problems) == 1 and wrong in problems[0]


def test_a_table_is_checked_against_the_file_its_caption_cites(checker, tmp_path):
    table = (
        "Sampler overhead (`sampler_overhead-h100.json`):\n\n"
        "| sampler | overhead ms/step |\n| --- | ---: |\n| ours: ddim | {} |\n"
    )
    assert _problems(checker, tmp_path, table.format(f"{_overhead('ours:ddim'):.3f}")) == []
    assert _problems(checker, tmp_path, table.format(f"{_overhead('ours:ddim') * 1.5:.3f}"))


def test_derived_numbers_are_evaluated_from_their_files(checker, tmp_path):
    ratio = (
        "{sampler_overhead-h100.json:/rows/[sampler=ours:ddim]/overhead_ms_per_step} / "
        "{sampler_overhead-h100.json:/rows/[sampler=diffusers:DDIMScheduler]/overhead_ms_per_step}"
    )
    page = (
        "DDIM needs 0.09x of diffusers' overhead (`sampler_overhead-h100.json`).\n<!-- derived: {} = {} -->\n"
    )
    true = f"{_overhead('ours:ddim') / _overhead('diffusers:DDIMScheduler'):.2f}"
    wrong = f"{float(true) * 1.5:.2f}"
    assert _problems(checker, tmp_path, page.replace("0.09x", true + "x").format(true, ratio)) == []
    problems = _problems(checker, tmp_path, page.replace("0.09x", wrong + "x").format(wrong, ratio))
    assert any(p.startswith(f"derived {wrong}") for p in problems)


def test_settings_targets_and_versions_are_not_measurements(checker, tmp_path):
    page = (
        "On torch 2.11 with `rotation_rate_t_max=0.9`, clash-free 0.926 (target >= 0.90; ~0.5 by chance) "
        "(`protein_sampling_variants-64k-seed0-h100.json`)."
    )
    assert _problems(checker, tmp_path, page) == []


def test_a_result_file_that_does_not_exist_cannot_be_cited(checker, tmp_path):
    problems = _problems(checker, tmp_path, "See `benchmarks/results/protein_full-h100-44k.json`.")
    assert problems and "does not hold" in problems[0]
    assert _problems(checker, tmp_path, "See `ddp_throughput-DiT_B_2-2proc-fused-hostA.json`.")
