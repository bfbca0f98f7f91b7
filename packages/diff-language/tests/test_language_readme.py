"""The README quotes what the result files it names hold (issue #22: it attributed the old cache's 0.75x / 0.88x
and a 110 M-parameter model to ``language_kv_cache-b1-h100.json``, which holds 3.04x / 1.99x at 85.8 M)."""

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
KV_FILE = re.compile(r"language_kv_cache-b\d+-h100\.json")


def _sentences(markdown: str) -> list[str]:
    """The README's prose (without fenced code and tables), one sentence per item."""
    prose = re.sub(r"```.*?```", "\n\n", markdown, flags=re.S)
    prose = "\n".join(line for line in prose.splitlines() if not line.lstrip().startswith("|"))
    out = []
    for paragraph in re.split(r"\n\s*\n", prose):
        out += re.split(r"(?<=\.)\s+(?=[A-Z`(])", " ".join(paragraph.split()))
    return out


def _quoted(sentence: str) -> tuple[set[str], set[str]]:
    """Speed-ups (``3.0x``, ``3.04x``) and parameter counts in millions (``85.8 M``) a sentence quotes."""
    speedups = set(re.findall(r"(?<![\w.])(\d+\.\d+)x", sentence))
    params = set(re.findall(r"(?<![\w.])(\d+(?:\.\d+)?) ?M(?:-| )param", sentence))
    return speedups, params


def _held(files: set[str]) -> tuple[set[str], set[str]]:
    """Every way the README may round the files' speed-ups (1 or 2 decimals) and parameter counts."""
    speedups, params = set(), set()
    for name in files:
        path = RESULTS / name
        assert path.is_file(), f"README names {name}, which benchmarks/results does not hold"
        for row in json.loads(path.read_text())["rows"]:
            speedups |= {f"{row['speedup']:.1f}", f"{row['speedup']:.2f}"}
            if "params" in row:
                params |= {f"{row['params'] / 1e6:.1f}", f"{row['params'] / 1e6:.0f}"}
    return speedups, params


@pytest.mark.skipif(not RESULTS.is_dir(), reason="needs the repository's benchmarks/results")
def test_every_sentence_naming_a_kv_cache_result_file_quotes_what_it_holds():
    checked = 0
    for sentence in _sentences(README.read_text(encoding="utf-8")):
        files = set(KV_FILE.findall(sentence))
        if not files:
            continue
        speedups, params = _quoted(sentence)
        held_speedups, held_params = _held(files)
        assert speedups <= held_speedups, f"{sorted(speedups - held_speedups)} not in {files}: {sentence}"
        assert params <= held_params, f"{sorted(params - held_params)} M not in {files}: {sentence}"
        checked += len(speedups) + len(params)
    assert checked >= 6  # the sentences about the H100 files do quote numbers


@pytest.mark.skipif(not RESULTS.is_dir(), reason="needs the repository's benchmarks/results")
def test_every_parameter_count_of_the_kv_cache_section_is_the_measured_models():
    """The GPU command's model is the H100 files' model: 85.8 M parameters, not the paper's 110 M."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### KV cache") :]
    section = section[: section.index("\n### ")]
    quoted = set().union(*(_quoted(s)[1] for s in _sentences(section)))
    quoted |= set(re.findall(r"(\d+(?:\.\d+)?) M-parameter", section))  # the table's device column
    held = _held({"language_kv_cache-b1-h100.json", "language_kv_cache-b8-h100.json"})[1]
    assert quoted and quoted <= held, (
        f"{sorted(quoted - held)} M parameters quoted; the files hold {sorted(held)}"
    )


def test_the_check_catches_the_numbers_the_readme_used_to_misattribute():
    old = (
        "The first H100 run (`benchmarks/results/language_kv_cache-b1-h100.json`, the old cache) found the cache "
        "slower at this tiny size (0.75x / 0.88x). GPU command (the paper's small model, 110 M parameters)."
    )
    (first, _) = _sentences(old)
    speedups, _ = _quoted(first)
    assert speedups == {"0.75", "0.88"}
    if RESULTS.is_dir():
        assert not speedups <= _held(set(KV_FILE.findall(first)))[0]
    assert _quoted("the 768 x 12 model (85.8 M parameters with this vocabulary)")[1] == {"85.8"}
    assert _quoted("(86 M-parameter model 768 x 12)")[1] == {"86"}
