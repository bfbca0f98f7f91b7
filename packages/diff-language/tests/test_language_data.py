"""The HMM language's exact likelihood, tokenisers, corpora and sample metrics."""

import itertools
import json
import math

import pytest
import torch
from diff_language.config import CorpusConfig
from diff_language.data import (
    SparseHMM,
    StreamWindows,
    build_corpus,
    fixed_windows,
    pydoc_documents,
    random_windows,
    read_documents,
    split_documents,
)
from diff_language.io import (
    SAMPLE_SEPARATOR,
    load_tokenizer,
    read_samples_jsonl,
    save_tokenizer,
    write_samples_jsonl,
    write_samples_text,
)
from diff_language.metrics import distinct_n, grammaticality, token_entropy
from diff_language.tokenizer import ByteTokenizer, train_bpe, word_level


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
    assert save_tokenizer(bpe, tmp_path / "bpe").name == "tokenizer.json"
    again = load_tokenizer(tmp_path / "bpe")
    assert again.encode(docs[1]) == bpe.encode(docs[1]) and again.eos_id == bpe.eos_id
    save_tokenizer(b, tmp_path / "bytes")
    assert isinstance(load_tokenizer(tmp_path / "bytes"), ByteTokenizer)
    w = word_level(["s0", "s1", "s2"])
    assert w.encode("s2 s0") == [2, 0] and w.eos_id == 3
    save_tokenizer(w, tmp_path / "words")
    assert load_tokenizer(tmp_path / "words").encode("s1 s2") == [1, 2]
    with pytest.raises(FileNotFoundError, match="neither"):
        load_tokenizer(tmp_path / "empty")


def test_windows_stay_inside_rows():
    stream = torch.arange(40).view(4, 10)
    win = random_windows(stream, 4, 100, torch.Generator().manual_seed(0))
    assert bool(((win[:, 1:] - win[:, :-1]) == 1).all())  # contiguous, never across a row end
    assert fixed_windows(stream, 4).tolist()[:3] == [[0, 1, 2, 3], [4, 5, 6, 7], [10, 11, 12, 13]]
    assert fixed_windows(stream, 4).shape == (8, 4)
    ds = StreamWindows(stream, 8, 2)
    assert len(ds) == 4 * 2 and ds[3].tolist() == list(range(12, 20))  # starts 0 and 2 in each row


def test_documents_from_files_and_pydoc_split(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n"
    )
    assert read_documents([tmp_path / "a.txt", tmp_path / "b.jsonl"]) == ["hello world", "one", "two"]
    with pytest.raises(ValueError, match="content"):
        read_documents([tmp_path / "b.jsonl"], jsonl_field="content")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "ok"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2 is not valid JSON"):
        read_documents([tmp_path / "bad.jsonl"])
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        read_documents([tmp_path / "missing.txt"])
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe{}")
    for name, match in (
        ("empty.txt", "is empty"),
        ("blank.jsonl", "is empty"),
        ("binary.jsonl", "is not UTF-8"),
    ):
        with pytest.raises(ValueError, match=rf"paths: .*{name} {match}"):
            read_documents([tmp_path / "a.txt", tmp_path / name])
    train, val = pydoc_documents()
    assert len(val) >= 5 and len(train) >= 8 * len(val)
    assert pydoc_documents() == (train, val)  # a fixed split
    assert split_documents(["abcdefghij"]) == (["abcdefghi"], ["j"])


def test_corpus_config_names_the_bad_setting():
    with pytest.raises(ValueError, match="kind"):
        CorpusConfig(kind="wiki")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paths"):
        CorpusConfig(kind="files")
    with pytest.raises(ValueError, match="paths: only read for kind='files' or 'python'"):
        CorpusConfig(paths=("a.txt",))
    with pytest.raises(ValueError, match="bpe_vocab"):
        CorpusConfig(bpe_vocab=100)


def test_synthetic_corpus_is_the_seeded_hmm_language():
    config = CorpusConfig(
        train_tokens=4096, hmm_states=4, hmm_vocab=6, hmm_branching=2, hmm_emit=2, hmm_seed=3
    )
    a, b = build_corpus(config), build_corpus(config)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)  # deterministic from the settings
    assert a.train.shape == (2, 2048) and a.val.shape == (9, 2048)  # val: max(20 000, train / 10) tokens
    assert bool(torch.isfinite(a.hmm.log_prob(a.train[:, :64])).all())  # every window is grammatical
    assert a.tokenizer.decode([0, 5]) == "s0 s5" and a.tokenizer.vocab_size == 7


def test_files_corpus_splits_documents_and_encodes_them_with_eos(tmp_path):
    docs = [f"document number {i}." for i in range(20)]
    for i, d in enumerate(docs):
        (tmp_path / f"{i:02d}.txt").write_text(d)
    paths = tuple(str(tmp_path / f"{i:02d}.txt") for i in range(20))
    corpus = build_corpus(CorpusConfig(kind="files", paths=paths, tokenizer="bytes"))
    tok = corpus.tokenizer
    val = [docs[0], docs[10]]  # every 10th document
    assert corpus.val.tolist() == [tok.encode_documents(val)]
    assert corpus.train.shape[1] == sum(len(d) + 1 for i, d in enumerate(docs) if i % 10)


def test_samples_are_written_as_text_and_jsonl(tmp_path):
    texts = ["first\n\nwith a blank line", "zweite: naïve"]
    write_samples_text(texts, tmp_path / "s.txt")
    assert (tmp_path / "s.txt").read_text(encoding="utf-8").split(SAMPLE_SEPARATOR) == [
        texts[0],
        texts[1] + "\n",
    ]
    write_samples_jsonl(texts, tmp_path / "s.jsonl", prompt="p")
    lines = (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1]) == {"index": 1, "prompt": "p", "text": texts[1]}
    assert read_samples_jsonl(tmp_path / "s.jsonl") == texts
