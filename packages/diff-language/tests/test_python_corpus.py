"""The offline Python corpus: split by file, duplicates removed, licences recorded, tokens saved and loaded."""

import json
from importlib import metadata

import numpy as np
import pytest
import torch
from diff_language.config import CorpusConfig, PythonCorpusConfig
from diff_language.data import build_corpus
from diff_language.data.dedup import Deduplicator, minhash, shingles
from diff_language.data.licences import distribution_licence, licence_family, site_packages_owners
from diff_language.data.python_corpus import _gather, build_python_corpus, load_python_corpus, split_of
from diff_language.metrics import python_parse_fraction, python_parses

CODE = "\n".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(60))


@pytest.fixture(scope="module")
def docs_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "docs"
    config = PythonCorpusConfig(sources=("docs",), bpe_vocab=300, val_fraction=0.1, test_fraction=0.1)
    return out, build_python_corpus(config, out, progress=False)


def test_split_is_deterministic_by_seed_and_has_the_asked_fractions():
    keys = [f"pkg/module_{i}.py" for i in range(20_000)]
    splits = [split_of(k, 0, 0.05, 0.05) for k in keys]
    assert splits == [split_of(k, 0, 0.05, 0.05) for k in keys]
    for name, want in (("validation", 0.05), ("test", 0.05), ("train", 0.9)):
        assert abs(splits.count(name) / len(keys) - want) < 0.01  # binomial s.e. 0.0015
    other = [split_of(k, 1, 0.05, 0.05) for k in keys]
    assert sum(a != b for a, b in zip(splits, other, strict=True)) > 1000  # another seed, another split


def test_minhash_estimates_the_jaccard_similarity():
    rng = np.random.default_rng(0)
    values = np.unique(rng.integers(0, 2**32, 4100, dtype=np.uint64))[:4000]  # like CRC32 shingle hashes
    a, b = values[:3000], values[1000:]  # overlap 2000 of 4000: Jaccard 0.5
    pa, pb = (
        rng.integers(1, 2**31 - 1, 512, dtype=np.uint64),
        rng.integers(0, 2**31 - 1, 512, dtype=np.uint64),
    )
    estimate = float(np.mean(minhash(a, pa, pb) == minhash(b, pa, pb)))
    assert abs(estimate - 0.5) < 0.07  # s.e. sqrt(0.25 / 512) = 0.022


def test_exact_and_near_duplicates_are_found_and_distinct_files_kept():
    dedup = Deduplicator(threshold=0.8)
    assert dedup.check("a.py", CODE) is None
    assert dedup.check("b.py", CODE.replace("\n", "  \r\n")) == ("exact", "a.py")  # only whitespace differs
    near = CODE.replace("return x * 3 + 3", "return x * 3 - 3")  # one line of 120 changed
    assert dedup.check("c.py", near) == ("near", "a.py")
    other = "\n".join(f"class C{i}:\n    value = '{i * 31}'\n" for i in range(60))
    assert dedup.check("d.py", other) is None
    assert len(shingles(CODE)) > 100


def test_licence_families_of_expressions():
    assert licence_family("MIT") == licence_family("BSD-3-Clause") == "permissive"
    assert licence_family("LGPL-2.1-or-later") == licence_family("MPL-2.0") == "copyleft"
    assert licence_family("MIT OR GPL-3.0-only") == "permissive"  # the user may choose MIT
    assert licence_family("Apache-2.0 AND CNRI-Python") == "permissive"
    assert licence_family("MIT AND GPL-3.0-only") == "copyleft"
    assert licence_family("NVIDIA Proprietary Software") == "unknown"


def test_installed_distribution_licence_and_file_owner_are_read_from_metadata():
    dist = metadata.distribution("tokenizers")
    licence = distribution_licence(dist)
    assert licence.family == "permissive" and "Apache" in licence.name
    init = next(f for f in dist.files if str(f).replace("\\", "/") == "tokenizers/__init__.py")
    path = dist.locate_file(init).resolve()
    owners = site_packages_owners(path.parents[1])
    assert owners[path][0] == "tokenizers" and owners[path][1] == dist.version


def test_permissive_build_keeps_only_permissive_site_packages_files():
    config = PythonCorpusConfig(sources=("site-packages",), site_packages_mb=0.3)
    docs, manifest = _gather(config, progress=False)
    kept = [r for r in manifest if "split" in r]
    assert kept and all(r["licence_family"] == "permissive" for r in kept)
    assert all(
        r["dropped"] == f"licence {r['licence_family']}"
        for r in manifest
        if r["licence_family"] != "permissive"
    )
    assert sum(r["bytes"] for r in kept) <= 0.3 * 2**20 + 256 * 1024  # the cap, overshot by one file at most
    assert {d.key for d in docs} == {r["key"] for r in kept}


def test_docs_corpus_folder_splits_by_document_and_saves_tokens(docs_corpus):
    out, summary = docs_corpus
    splits = {
        s: [json.loads(line) for line in (out / f"{s}.jsonl").open()] for s in ("train", "validation", "test")
    }
    keys = [{d["key"] for d in docs} for docs in splits.values()]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])  # a document in one split only
    assert summary["documents"] == {s: len(v) for s, v in splits.items()}
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").open()]
    from pydoc_data.topics import topics

    assert len(manifest) == len(topics)  # every topic accounted for: a split or why it was dropped
    assert all(("split" in r) != ("dropped" in r) for r in manifest)
    assert "PSF" in (out / "LICENCES.md").read_text()
    data = load_python_corpus(out)
    tok = data.tokenizer
    first = splits["train"][0]["text"]
    head = data.train[0, : len(tok.encode(first))].tolist()
    assert tok.decode(head) == first  # the stream is the documents, in order, byte-exact
    assert int((data.train == tok.eos_id).sum()) == len(splits["train"])  # one EOS after each document
    from safetensors.torch import load_file

    assert load_file(str(out / "tokens-train.safetensors"))["tokens"].dtype == torch.int16  # vocabulary 300
    via_config = build_corpus(CorpusConfig(kind="python", paths=(str(out),)))
    assert via_config.val.shape == data.val.shape


def test_an_existing_folder_is_refused_and_left_alone(docs_corpus):
    out, _ = docs_corpus
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(FileExistsError, match=r"out: .* exists"):
        build_python_corpus(PythonCorpusConfig(sources=("docs",), bpe_vocab=300), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="sources"):
        PythonCorpusConfig(sources=("stdlib", "github"))
    with pytest.raises(ValueError, match="licences"):
        PythonCorpusConfig(licences="copyleft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paths: expected one corpus folder"):
        CorpusConfig(kind="python")


def test_python_parse_fraction_judges_whole_and_cut_documents():
    assert python_parses("x = 1\nprint(x)\n") and not python_parses("def f(:\n    pass\n")
    cut = "x = 1\ny = (2 +"
    assert not python_parses(cut) and python_parses(cut, complete=False)  # the unfinished line is dropped
    assert not python_parses("y = (2 +", complete=False)  # nothing left
    assert python_parse_fraction(["x = 1", "def (", cut], [True, True, False]) == pytest.approx(2 / 3)
