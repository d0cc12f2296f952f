import numpy as np
import pytest

from ttrlab.data import TASKS, load_split, seeded_subset
from ttrlab.data.loading import read_glue_tsv
from ttrlab.core.errors import UserError

OFFICIAL = {  # GLUE sizes (train, dev) for the files present on this machine
    "sst2": (67349, 872),
    "cola": (8551, 1043),
    "rte": (2490, 277),
    "mrpc": (3668, 408),
}


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_real_glue_files_parse_to_official_sizes(glue_dir, task):
    spec = TASKS.get(task)
    train, dev = load_split(spec, "train", str(glue_dir)), load_split(spec, "dev", str(glue_dir))
    assert (len(train), len(dev)) == OFFICIAL[task]
    assert {e.label for e in train} == {0, 1}
    assert all(len(e.texts) == len(spec.text_fields) for e in train)


def test_all_six_tasks_load_and_pairs_stay_pairs(glue_dir):
    for task in ("sst2", "cola", "qnli", "qqp", "rte", "mrpc"):
        spec = TASKS.get(task)
        examples = load_split(spec, "train", str(glue_dir))
        assert examples, task
        for e in examples[:50]:
            assert len(e.texts) == (2 if spec.is_pair else 1)
            assert all(t and "\t" not in t for t in e.texts)
    qqp = load_split(TASKS.get("qqp"), "train", str(glue_dir))
    assert qqp[3].texts == ('What is the best way to learn "algebra"?', "How do I learn algebra fast?")
    assert [e.label for e in qqp] == [0, 0, 1, 1]
    qnli = load_split(TASKS.get("qnli"), "dev", str(glue_dir))
    assert len(qnli) == 5463  # default CSV quoting would merge rows into 5,267
    assert {e.label for e in load_split(TASKS.get("qnli"), "train", str(glue_dir))} == {0, 1}


def test_mrpc_bom_and_quotes(glue_dir):
    dev = load_split(TASKS.get("mrpc"), "dev", str(glue_dir))
    assert len(dev) == 408
    assert any(e.texts[1].startswith('"') for e in dev)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(UserError, match=r"missing data file .*QQP.*gluebenchmark"):
        load_split(TASKS.get("qqp"), "train", str(tmp_path))


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood film\t1\nbad film\t1\textra\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train.tsv:3: 3 columns, expected 2"):
        read_glue_tsv(TASKS.get("sst2"), path)
    path.write_text("sentence\tlabel\ngood film\tpositive\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train.tsv:2: the label \(column 2\) is not one of") as refused:
        read_glue_tsv(TASKS.get("sst2"), path)
    assert "positive" not in str(refused.value)  # a message names the cell, never echoes it


def test_seeded_subset_is_random_reproducible_and_ordered(glue_dir):
    train = load_split(TASKS.get("sst2"), "train", str(glue_dir))
    a, b, c = (seeded_subset(train, 500, np.random.default_rng(s)) for s in (1, 1, 2))
    assert a == b and a != c
    rows = [e.row for e in a]
    assert rows == sorted(rows) and rows != list(range(500))  # not the first N rows
    assert max(rows) > 10 * 500
    assert seeded_subset(train[:10], 50, np.random.default_rng(0)) == train[:10]
