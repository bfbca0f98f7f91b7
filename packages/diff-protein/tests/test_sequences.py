"""FASTA / A3M parsing, UniRef headers, label vocabulary and tokenisation."""

from pathlib import Path

import pytest
import torch
from diff_protein.data import sequences as sq

A3M = """; a comment line
>query
MKV-LAG
>UniRef90_A0A1/2-8 Some protein n=3 Tax=Homo sapiens TaxID=9606 RepID=A0A1_HUMAN
MKaaV-LAG
>UniRef90_B2 Other protein n=1 Tax=Mus musculus TaxID=10090 RepID=B2_MOUSE
-KVcLA-g.G
>no_taxon
-------
"""

SEQ_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sequences" / "1a00_A_uniref90.a3m"
if not SEQ_FILE.is_file():
    SEQ_FILE = Path("/work/shared/data/sequences/1a00_A_uniref90.a3m")


def test_a3m_drops_insertions_and_gaps():
    recs = sq.parse_a3m(A3M)
    assert [r.sequence for r in recs] == ["MKVLAG", "MKVLAG", "KVLAG"]
    assert recs[1].header.startswith("UniRef90_A0A1/2-8")


def test_a3m_aligned_rows_have_query_columns():
    aligned = sq.parse_a3m(A3M, keep_gaps=True)
    assert [r.sequence for r in aligned] == ["MKV-LAG", "MKV-LAG", "-KVLA-G"]


def test_uniref_header_fields():
    h = sq.parse_uniref_header(
        ">UniRef90_A0A4U1FNC5/3-139 [subseq from] Hemoglobin subunit zeta n=1 "
        "Tax=Monodon monoceros TaxID=40151 RepID=A0A4U1FNC5_MONMO"
    )
    assert h.identifier == "UniRef90_A0A4U1FNC5/3-139"
    assert h.description == "[subseq from] Hemoglobin subunit zeta"
    assert (h.members, h.taxon, h.tax_id, h.rep_id) == (1, "Monodon monoceros", 40151, "A0A4U1FNC5_MONMO")
    bare = sq.parse_uniref_header("query")
    assert bare.taxon is None and bare.tax_id is None


def test_label_vocabulary_has_unknown_class():
    vocab = sq.LabelVocabulary.from_counts(["b", "a", "b", None, "c", "c", "c"], min_count=2)
    assert vocab.labels == [sq.UNKNOWN_LABEL, "c", "b"]
    assert vocab.encode("b") == 2 and vocab.encode("a") == 0 and vocab.encode(None) == 0
    assert vocab.decode(1) == "c"
    with pytest.raises(ValueError, match="index"):
        vocab.decode(7)


def test_tokenize_round_trip_and_unknowns():
    seq = sq.AMINO_ACIDS + "#"
    tokens = sq.tokenize(seq)
    assert tokens.tolist() == list(range(21)) and sq.detokenize(tokens) == seq
    assert sq.tokenize("mkv").tolist() == [10, 8, 17]
    with pytest.raises(ValueError, match="position 1"):
        sq.tokenize("AXC")
    assert sq.tokenize("AXC", unknown="mask").tolist() == [0, sq.MASK_TOKEN, 1]


def test_dataset_from_uniref_records():
    ds = sq.SequenceDataset.from_uniref_records(sq.parse_a3m(A3M), max_length=4)
    assert len(ds) == 3
    assert ds[0]["label"].item() == 0  # the query has no Tax=
    assert ds.vocabulary.decode(ds[1]["label"].item()) == "Homo sapiens"
    assert ds[2]["tokens"].tolist() == sq.tokenize("KVLA").tolist()
    by_id = sq.SequenceDataset.from_uniref_records(sq.parse_a3m(A3M), label_field="tax_id")
    assert by_id.vocabulary.decode(int(by_id[2]["label"])) == "10090"
    with pytest.raises(ValueError, match="label_field"):
        sq.SequenceDataset.from_uniref_records([], label_field="species")


@pytest.mark.skipif(not SEQ_FILE.is_file(), reason="shared alignment absent")
def test_real_alignment():
    recs = sq.read_a3m(SEQ_FILE)
    assert len(recs) > 10 and recs[0].header == "query"
    assert all(r.sequence == r.sequence.upper() for r in recs)
    aligned = sq.read_a3m(SEQ_FILE, keep_gaps=True)
    assert {len(r.sequence) for r in aligned} == {len(recs[0].sequence)}
    taxa = [sq.parse_uniref_header(r.header).taxon for r in recs[1:]]
    assert sum(t is not None for t in taxa) / len(taxa) > 0.9
    ds = sq.SequenceDataset.from_uniref_records(recs, min_count=2)
    assert len(ds.vocabulary) > 2 and torch.all(ds.labels < len(ds.vocabulary))
