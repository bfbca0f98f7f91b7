"""The HMM language's exact likelihood, tokenisers, corpora and sample metrics."""

import itertools
import json
import math

import pytest
import torch
from diff_language.data import fixed_windows, pydoc_documents, random_windows, read_documents, split_documents
from diff_language.metrics import distinct_n, grammaticality, token_entropy
from diff_language.synthetic import SparseHMM
from diff_language.tokenizer import ByteTokenizer, load_tokenizer, train_bpe, word_level


@pytest.fixture(scope="module")
def hmm() -> SparseHMM:
    return SparseHMM(n_states=4, vocab_size=6, branching=2, emit=2, seed=3)


def test_hmm_probabilities_sum_to_one_and_entropy_matches_enumeration(hmm):
    seqs = torch.tensor(list(itertools.product(range(6), repeat=3)))
    lp = hmm.log_prob(seqs)
    p = lp.exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-10)
    exact = float(-(p[p > 0] * lp[p > 0]).sum()) / 3
    est, se = hmm.window_entropy(3, samples=20000, generator=torch.Generator().manual_seed(0))
    assert abs(est - exact) < 4 * se + 1e-9
    torch.testing.assert_close(hmm.stationary @ hmm.trans, hmm.stationary)


def test_hmm_samples_are_grammatical_and_most_strings_are_not(hmm):
    g = torch.Generator().manual_seed(1)
    samples = hmm.sample(50, 12, g)
    assert bool(torch.isfinite(hmm.log_prob(samples)).all())
    assert grammaticality(hmm, samples.tolist()) == 1.0
    noise = torch.randint(0, 6, (50, 12), generator=g)
    assert grammaticality(hmm, noise.tolist()) < 0.2
    assert grammaticality(hmm, [[0, 1, 99]]) == 0.0


def test_sample_metrics_on_hand_examples():
    assert token_entropy([[0, 0, 1, 1]]) == pytest.approx(math.log(2))
    assert token_entropy([[3, 3, 3]]) == 0.0
    assert distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)
    assert distinct_n([[1, 2, 3]], 1) == 1.0


def test_tokenizers_round_trip_and_save(tmp_path):
    b = ByteTokenizer()
    text = "naïve café → ok"
    assert b.decode(b.encode(text)) == text
    docs = [
        "the quick brown fox jumps over the lazy dog. " * 20,
        "pack my box with five dozen liquor jugs. " * 20,
    ]
    bpe = train_bpe(docs, vocab_size=300)
    ids = bpe.encode(docs[0])
    assert bpe.decode(ids) == docs[0] and len(ids) < len(docs[0])
    assert bpe.encode_documents(docs[:1])[-1] == bpe.eos_id
    bpe.save(tmp_path / "bpe")
    assert load_tokenizer(tmp_path / "bpe").encode(docs[1]) == bpe.encode(docs[1])
    b.save(tmp_path / "bytes")
    assert isinstance(load_tokenizer(tmp_path / "bytes"), ByteTokenizer)
    w = word_level(["s0", "s1", "s2"])
    assert w.encode("s2 s0") == [2, 0] and w.eos_id == 3


def test_windows_stay_inside_rows():
    stream = torch.arange(40).view(4, 10)
    win = random_windows(stream, 4, 100, torch.Generator().manual_seed(0))
    assert bool(((win[:, 1:] - win[:, :-1]) == 1).all())  # contiguous, never across a row end
    assert fixed_windows(stream, 4).shape == (8, 4)


def test_documents_from_files_and_pydoc_split(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n"
    )
    assert read_documents([tmp_path / "a.txt", tmp_path / "b.jsonl"]) == ["hello world", "one", "two"]
    with pytest.raises(ValueError, match="content"):
        read_documents([tmp_path / "b.jsonl"], jsonl_field="content")
    train, val = pydoc_documents()
    assert len(val) >= 5 and len(train) >= 8 * len(val)
    assert pydoc_documents() == (train, val)  # a fixed split
    assert split_documents(["abcdefghij"]) == (["abcdefghi"], ["j"])
