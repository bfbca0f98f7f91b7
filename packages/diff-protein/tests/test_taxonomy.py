"""Taxonomy labels from the shipped class table, aligned windows, identity clustering and the cluster split, and
the sequence metrics of the real-alignment benchmark (per-position profile distance, nearest identity)."""

from pathlib import Path

import numpy as np
import pytest
from diff_protein import metrics as M
from diff_protein.data.sequences import SequenceRecord, parse_a3m
from diff_protein.data.taxonomy import (
    aligned_window,
    class_table,
    cluster_by_identity,
    one_hot_rows,
    split_clusters,
    taxon_class,
)

SHARED = Path("/work/shared/data/sequences/1a00_A_uniref90.a3m")


def test_class_table_and_taxon_class(tmp_path):
    table = class_table()
    assert (
        table["Homo"] == "Mammalia" and table["Danio"] == "Actinopterygii" and table["Xenopus"] == "Amphibia"
    )
    assert set(table.values()) == {"Actinopterygii", "Mammalia", "Aves", "Amphibia", "Reptilia"}
    header = "UniRef90_X/1-9 Hemoglobin n=1 Tax=Homo sapiens TaxID=9606 RepID=X"
    assert taxon_class(header, table) == "Mammalia"
    assert taxon_class("UniRef90_Y n=1 Tax=Latimeria chalumnae TaxID=7897", table) is None  # not in the table
    assert taxon_class("query", table) is None
    bad = tmp_path / "t.tsv"
    bad.write_text("name\tclass\nHomo Mammalia\n")
    with pytest.raises(ValueError, match="line 2"):
        class_table(bad)


def test_aligned_window_keeps_complete_rows():
    text = ">q\nACDEFGH\n>a\nAC-EFGH\n>b\nACDxxEFGH\n>c\nACXEFGH\n"
    records = parse_a3m(text, keep_gaps=True)
    assert [r.sequence for r in records] == ["ACDEFGH", "AC-EFGH", "ACDEFGH", "ACXEFGH"]
    assert aligned_window(records, 1, 3) == [(0, "CDE"), (2, "CDE")]
    assert aligned_window(records, 3, 4) == [(0, "EFGH"), (1, "EFGH"), (2, "EFGH"), (3, "EFGH")]
    assert aligned_window([SequenceRecord("s", "AC")], 1, 3) == []  # too short
    with pytest.raises(ValueError, match="start"):
        aligned_window(records, -1, 3)


def test_greedy_clustering_and_split():
    seqs = ["AAAAAAAAAA", "AAAAAAAAAC", "CCCCCCCCCC", "CCCCCCCCCA", "DDDDDDDDDD"]
    ids = cluster_by_identity(seqs, 0.8)
    assert ids.tolist() == [0, 0, 1, 1, 2]
    assert cluster_by_identity(seqs, 1.0).tolist() == [0, 1, 2, 3, 4]
    held = split_clusters(ids, 0.3, seed=0)
    assert held.mean() >= 0.3
    for c in np.unique(ids):  # whole clusters on one side
        assert len(set(held[ids == c].tolist())) == 1
    with pytest.raises(ValueError, match="aligned"):
        cluster_by_identity(["AAA", "AA"], 0.5)
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_clusters(ids, 1.0)


def test_profile_distance_and_nearest_identity():
    assert M.positional_profile_distance(["AC", "AD"], ["AD", "AC"]) == pytest.approx(0.0)
    assert M.positional_profile_distance(["AA"], ["CC"]) == pytest.approx(1.0)
    # column 0 identical, column 1: {C: 1} vs {C: 0.5, D: 0.5} -> TV 0.5; mean 0.25
    assert M.positional_profile_distance(["AC"], ["AC", "AD"]) == pytest.approx(0.25)
    assert M.nearest_identity(["AAAA", "CCCA"], ["AAAC", "CCCC"]).tolist() == [0.75, 0.75]
    with pytest.raises(ValueError, match="common length"):
        M.nearest_identity(["AA"], ["AAA"])


@pytest.mark.skipif(not SHARED.is_file(), reason="shared alignment absent")
def test_shared_alignment_gives_five_classes_with_members():
    from diff_protein.data.sequences import read_a3m

    records = read_a3m(SHARED, keep_gaps=True)
    table = class_table()
    rows = aligned_window(records, 34, 64)
    classes = [taxon_class(records[i].header, table) for i, _ in rows]
    counts = {c: classes.count(c) for c in set(classes) if c}
    assert len(counts) == 5 and min(counts.values()) >= 50


def test_one_hot_rows_layout():
    x = one_hot_rows(["ACy-", "XWAa"])
    assert x.shape == (2, 4 * 21) and x.dtype == np.float32
    x = x.reshape(2, 4, 21)
    # position-major, AMINO_ACIDS order then "-"; lower case folds; X gives an all-zero position
    assert x[0, 0, 0] == 1 and x[0, 1, 1] == 1 and x[0, 2, 19] == 1 and x[0, 3, 20] == 1
    assert x[1, 0].sum() == 0 and x[1, 1, 18] == 1 and x[1, 2, 0] == 1 and x[1, 3, 0] == 1
    assert x.sum() == 7
    with pytest.raises(ValueError, match="sequences"):
        one_hot_rows(["AC", "A"])
