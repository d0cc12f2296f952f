"""The style-transferred SST-2 sets (ttrlab.data.style): row counts as SOURCE.md states them,
the pairing of clean sentences with their transfers, the upstream tweets/poetry defect, and
clear errors for missing or malformed files."""
import warnings

import numpy as np
import pytest

from conftest import SHARED_DATA
from ttrlab.data.style import (
    STYLES,
    StyleDataWarning,
    align_in_order,
    load_style_pairs,
    read_style_tsv,
    resolve_style_dir,
    sentence_key,
    style_file,
    transfer_lookup,
)
from ttrlab.core.errors import UserError

STYLE_DIR = str(SHARED_DATA / "style")
pytestmark = pytest.mark.needs_data("style")


@pytest.mark.parametrize("style,train,dev,test", [
    ("bible", 6920, 872, 1821), ("shakespeare", 6805, 872, 1808), ("tweets", 6805, 872, 1808),
    ("lyrics", 6805, 872, 1808), ("poetry", 6805, 872, 1808),
])
def test_stylebkd_row_counts_and_labels_match_source_md(style, train, dev, test):
    counts = [len(read_style_tsv(style_file(style, split, STYLE_DIR))) for split in ("train", "dev", "test")]
    assert counts == [train, dev, test]
    clean = read_style_tsv(style_file(style, "train", STYLE_DIR, clean=True))
    assert len(clean) == 6920 and sum(label == 0 for _, label in clean) == 3310
    assert all(not text.endswith((" ", "\r")) for text, _ in clean + read_style_tsv(style_file(style, "dev", STYLE_DIR)))


def test_scpn_pairs_are_the_changed_rows_with_their_true_labels():
    train = load_style_pairs("scpn", "train", STYLE_DIR)
    assert len(train) == 1383  # SOURCE.md: the rows whose text is not in clean/train
    assert sum(p.label == 0 for p in train) == 665  # 3,610 + 665 = 4,275 label-1 rows upstream
    assert all(p.clean != p.transferred for p in train)
    dev = load_style_pairs("scpn", "dev", STYLE_DIR)
    assert len(dev) == 427 and all(p.label == 0 for p in dev)  # paraphrases of negatives only


def test_bible_is_row_aligned_and_other_styles_pair_in_order():
    bible = load_style_pairs("bible", "train", STYLE_DIR)
    clean = read_style_tsv(style_file("bible", "train", STYLE_DIR, clean=True))
    assert [p.clean for p in bible] == [text for text, _ in clean]
    for style in ("shakespeare", "lyrics"):
        pairs = load_style_pairs(style, "dev", STYLE_DIR)
        transferred = read_style_tsv(style_file(style, "dev", STYLE_DIR))
        assert [p.transferred for p in pairs] == [text for text, _ in transferred]
        clean_dev = read_style_tsv(style_file(style, "dev", STYLE_DIR, clean=True))
        assert [p.label for p in pairs] == [label for _, label in transferred] == [label for _, label in clean_dev]


def test_alignment_recovers_dropped_rows():
    """Drop 3% of bible's row-aligned transfers (the other styles dropped 1.7%): the alignment
    must find the true partner of nearly every remaining row, with and without labels."""
    clean = read_style_tsv(style_file("bible", "train", STYLE_DIR, clean=True))[:1500]
    transferred = read_style_tsv(style_file("bible", "train", STYLE_DIR))[:1500]
    keep = np.sort(np.random.default_rng(0).choice(1500, size=1455, replace=False))
    for match_labels in (True, False):
        pairs = align_in_order(clean, [transferred[k] for k in keep], match_labels=match_labels)
        correct = np.mean([i == keep[j] for i, j in pairs])
        assert correct > 0.99, correct
        naive = np.mean([j == keep[j] for j in range(len(keep))])  # pairing by row number
        assert naive < 0.2


def test_alignment_by_hand():
    clean = [("the cat sat", 0), ("a dog ran far", 1), ("birds sing loud", 1), ("fish swim", 0)]
    transferred = [("lo , the cat did sit", 0), ("and the birds did sing loud", 1), ("the fish did swim", 0)]
    assert align_in_order(clean, transferred) == [(0, 0), (2, 1), (3, 2)]
    assert align_in_order(clean[:3], transferred[:2]) == [(0, 0), (2, 1)]
    with pytest.raises(ValueError, match="more rows"):
        align_in_order(clean[:1], transferred)
    with pytest.raises(ValueError, match="respects the labels"):
        align_in_order([("a", 0)], [("a", 1)])


def test_tweets_test_file_is_poetry_upstream_and_warns():
    with pytest.warns(StyleDataWarning, match="'tweets' test.*byte-identical to the 'poetry'"):
        load_style_pairs("tweets", "test", STYLE_DIR)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StyleDataWarning)
        load_style_pairs("tweets", "dev", STYLE_DIR)
        load_style_pairs("poetry", "test", STYLE_DIR)


@pytest.mark.needs_data("glue")
def test_sentence_key_matches_glue_dev_to_the_style_sets():
    from ttrlab.data import TASKS, load_split

    dev = load_split(TASKS.get("sst2"), "dev", str(SHARED_DATA / "glue"))
    lookup = transfer_lookup("shakespeare", "dev", STYLE_DIR)
    assert all(sentence_key(e.texts[0]) in lookup for e in dev)  # all 872, despite -lrb- vs (
    assert sentence_key("-lrb- a -rrb- shapeless blob , wo n't") == sentence_key("( a ) shapeless blob, wo n't")


def test_sentence_level_sst2_as_the_task_data(tmp_path):
    """The recipe of docs/attacks.md: a GLUE-layout folder whose SST-2 is the style set's clean
    folder, so S-BPA trains on sentence-level SST-2; every training sentence is a candidate."""
    from ttrlab.data import TASKS, load_split

    (tmp_path / "SST-2").symlink_to(SHARED_DATA / "style" / "stylebkd" / "clean" / "sst-2")
    train = load_split(TASKS.get("sst2"), "train", str(tmp_path))
    assert len(train) == 6920 and train[0].label == 1 and not train[0].texts[0].endswith("\r")
    lookup = transfer_lookup("bible", "train", STYLE_DIR)
    assert all(sentence_key(e.texts[0]) in lookup for e in train)


def test_missing_and_malformed_files_are_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown style 'poem'.*did you mean 'poetry'"):
        style_file("poem", "train", STYLE_DIR)
    with pytest.raises(UserError, match="unknown style split 'valid'"):
        style_file("bible", "valid", STYLE_DIR)
    with pytest.raises(UserError, match="missing 'lyrics' style set file"):
        load_style_pairs("lyrics", "train", str(tmp_path))
    monkeypatch.delenv("TTRLAB_STYLE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no style data folder found"):
        resolve_style_dir(None)
    monkeypatch.setenv("TTRLAB_STYLE_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="is not a directory"):
        resolve_style_dir(None)
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nfine\t1\nbroken\tpositive\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.tsv:3"):
        read_style_tsv(bad)
    bad.write_text("text\tlabel\nfine\t1\n", encoding="utf-8")
    with pytest.raises(UserError, match="header"):
        read_style_tsv(bad)
    assert set(STYLES) == {"bible", "shakespeare", "tweets", "lyrics", "poetry", "scpn"}
