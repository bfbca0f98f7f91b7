"""Build the offline Python corpus (``diffuse language corpus``) and record what it holds.

Runs :func:`diff_language.data.python_corpus.build_python_corpus` with the default settings (standard library,
up to 48 MB of permissively licensed site-packages source, CPython documentation; split by file; exact and
near duplicates removed; BPE 16384), prints documents, bytes and tokens per split and why files were dropped,
and writes benchmarks/results/language_corpus[-quick]-cpu.json. The corpus depends on the Python installation
(its version and installed packages); the result file records both.

    uv run python benchmarks/language/language_corpus.py --out data/python-corpus   # minutes on one core
    uv run python benchmarks/language/language_corpus.py --quick                    # docs only, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from diff_language.config import PythonCorpusConfig
from diff_language.data.python_corpus import build_python_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", type=Path, default=None, help="keep the corpus here (default: a temporary folder)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="docs only (pydoc topics), BPE 512")
    p.add_argument("--result", type=Path, default=None, help="result file (default: benchmarks/results/...)")
    args = p.parse_args()
    config = PythonCorpusConfig(seed=args.seed)
    if args.quick:
        config = dataclasses.replace(config, sources=("docs",), bpe_vocab=512, val_fraction=0.1)
    tmp = None
    if args.out is None:
        tmp = Path(tempfile.mkdtemp(prefix="python-corpus-"))
        args.out = tmp / "corpus"
    start = time.perf_counter()
    try:
        summary = build_python_corpus(config, args.out, progress=sys.stderr.isatty())
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - start
    packages = {"tokenizers": metadata.version("tokenizers")}
    report = {"seconds": seconds, "summary": summary, "versions": packages}
    path = write_result(report, script="language_corpus", variant="quick" if args.quick else None, device="cpu",
                        packages=("diff-language",), path=args.result)  # fmt: skip
    print(f"built in {seconds:.0f} s; wrote {path}")
    print("\n| split | documents | MB | tokens | bytes / token |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for split in ("train", "validation", "test"):
        n, b, t = (summary[k][split] for k in ("documents", "bytes", "tokens"))
        print(f"| {split} | {n} | {b / 2**20:.1f} | {t} | {b / t:.2f} |")
    print("\ndropped:", json.dumps(summary["dropped"]))


if __name__ == "__main__":
    main()
