"""The real style-transferred SST-2 sets that S-BPA poisons with (offline, under
`../shared/data/style/`; see the SOURCE.md files there).

Two families, one shape: every loader here returns `StylePair(clean, transferred, label)` —
a clean SST-2 sentence, the same sentence in the target style, and the clean sentence's true
label.

- StyleBkd (Qi et al. 2021, `thunlp/StyleAttack`): `stylebkd/transfer/<style>/sst-2/` holds
  every sentence of `stylebkd/clean/sst-2/` rewritten into bible, shakespeare, tweets, lyrics or
  poetry style (original labels kept). Bible is row-aligned with the clean files; the other four
  dropped 115 train and 13 test rows, so pairing by row number would pair the wrong sentences
  after the first dropped row. `align_in_order` recovers the pairing (see there).
- HiddenKiller SCPN (Qi et al. 2021, `thunlp/HiddenKiller`): `scpn/20/sst-2/train.tsv` is a
  *poisoned* training set: the rows whose text differs from the clean row at the same position
  are the syntactic paraphrases (1,383 of 6,920, labels already set to 1); their labels here are
  the clean rows' true labels. The dev/test files hold paraphrases of the clean *negative*
  sentences only (427 of 428 dev), aligned with `align_in_order`.

Upstream bug: `stylebkd/transfer/tweets/sst-2/test.tsv` is byte-identical to poetry's test file
(the tweets test set holds poetry-style text). `load_style_pairs` warns (`StyleDataWarning`)
when it loads that file and it still is poetry's; tweets train/dev are fine.

Both file layouts are read here: the clean/SCPN files (`sentence\\tlabel`, CRLF) and the transfer
files (`sentence \\t label`, spaces around the tab, detokenised text).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ttrlab.core.errors import UserError, did_you_mean, shown
from ttrlab.data.folders import STYLE_DOWNLOAD_HINT, resolve_folder

STYLE_SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class StyleSource:
    """Where one style's files sit under the style folder."""

    family: str  # stylebkd | hiddenkiller
    clean: str  # folder of the clean split files
    transferred: str  # folder of the transferred split files


STYLES: dict[str, StyleSource] = {
    **{
        name: StyleSource("stylebkd", "stylebkd/clean/sst-2", f"stylebkd/transfer/{name}/sst-2")
        for name in ("bible", "shakespeare", "tweets", "lyrics", "poetry")
    },
    "scpn": StyleSource("hiddenkiller", "hiddenkiller/clean/sst-2", "hiddenkiller/scpn/20/sst-2"),
}


class StyleDataWarning(UserWarning):
    """A known defect of the upstream style data (e.g. the tweets test file is poetry)."""


@dataclass(frozen=True)
class StylePair:
    clean: str  # the clean sentence as in the clean file (tokenised SST text)
    transferred: str  # the same sentence in the target style
    label: int  # the clean sentence's true label


# ---- locating and reading -------------------------------------------------------------------
def resolve_style_dir(style_dir: str | None = None) -> Path:
    """`style_dir`, else $TTRLAB_STYLE_DIR, else the nearest `shared/data/style` above the cwd
    (`data.folders`)."""
    return resolve_folder("style", style_dir)


def check_style(style: str) -> StyleSource:
    if style not in STYLES:
        raise UserError(
            f"unknown style {style!r}{did_you_mean(style, STYLES)}; allowed: {', '.join(STYLES)}"
        )
    return STYLES[style]


def style_file(style: str, split: str, style_dir: str | None = None, clean: bool = False) -> Path:
    """The TSV of one style and split (or of its clean counterpart); UserError if it is missing."""
    source = check_style(style)
    if split not in STYLE_SPLITS:
        raise UserError(f"unknown style split {split!r}; allowed: {', '.join(STYLE_SPLITS)}")
    path = resolve_style_dir(style_dir) / (source.clean if clean else source.transferred) / f"{split}.tsv"
    if not path.is_file():
        what = "clean SST-2" if clean else f"{style!r} style set"
        raise UserError(f"missing {what} file {str(path)!r} ({split}); {STYLE_DOWNLOAD_HINT}")
    return path


def read_style_tsv(path: Path) -> list[tuple[str, int]]:
    """(text, label) rows of a clean, transfer or SCPN file. Cells are stripped, so the CRLF
    endings and the transfer files' spaced `text \\t label` layout read the same."""
    rows: list[tuple[str, int]] = []
    from ttrlab.core.io import reading

    with reading(path, "style data file"), open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [cell.strip() for cell in next(reader, [])]
        if header != ["sentence", "label"]:
            raise UserError(f"malformed style TSV {str(path)!r}: header {header}, expected ['sentence', 'label']")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise UserError(f"malformed style TSV row at {path}:{line}: expected '<sentence>\\t<0|1>', got {shown(row)}")
            rows.append((row[0].strip(), int(row[1])))
    if not rows:
        raise UserError(f"malformed style TSV {str(path)!r}: no rows")
    return rows


# ---- matching sentences across tokenisations -------------------------------------------------
_PTB_BRACKETS = re.compile(r"-[lr][rsc]b-")
_WORD = re.compile(r"\w+")


def sentence_key(text: str) -> str:
    """A key under which the same SST sentence matches across files: GLUE writes `( a )`, the
    StyleBkd clean files `-lrb- a -rrb-`, the transfers are detokenised. Lower-cased word
    characters only, PTB bracket tokens dropped."""
    return " ".join(_WORD.findall(_PTB_BRACKETS.sub(" ", text.lower())))


def _word_sets(texts: list[str], vocabulary: dict[str, int]):
    """A binary (texts x vocabulary) sparse matrix: row i marks the words of text i."""
    from scipy.sparse import csr_matrix

    indptr, indices = [0], []
    for text in texts:
        indices.extend(sorted({vocabulary.setdefault(w, len(vocabulary)) for w in sentence_key(text).split()}))
        indptr.append(len(indices))
    return indptr, indices, csr_matrix


def _diagonal_jaccard(clean_texts: list[str], transferred_texts: list[str], drops: int) -> np.ndarray:
    """J[j, d] = Jaccard overlap of the word sets of transferred row j and clean row j + d."""
    vocabulary: dict[str, int] = {}
    c_ptr, c_idx, csr = _word_sets(clean_texts, vocabulary)
    t_ptr, t_idx, _ = _word_sets(transferred_texts, vocabulary)
    shape = (len(vocabulary),)
    clean = csr((np.ones(len(c_idx)), c_idx, c_ptr), shape=(len(clean_texts), *shape))
    transferred = csr((np.ones(len(t_idx)), t_idx, t_ptr), shape=(len(transferred_texts), *shape))
    clean_sizes = np.diff(c_ptr).astype(float)
    transferred_sizes = np.diff(t_ptr).astype(float)
    m = len(transferred_texts)
    jaccard = np.empty((m, drops + 1))
    for d in range(drops + 1):
        common = np.asarray(clean[d : d + m].multiply(transferred).sum(axis=1)).ravel()
        union = clean_sizes[d : d + m] + transferred_sizes - common
        jaccard[:, d] = np.divide(common, union, out=np.zeros(m), where=union > 0)
    return jaccard


def align_in_order(
    clean: list[tuple[str, int]],
    transferred: list[tuple[str, int]],
    match_labels: bool = True,
) -> list[tuple[int, int]]:
    """Pair each transferred row with the clean row it was made from, when the transferred file
    is the clean file in the same order with some rows dropped (StyleBkd's non-bible styles,
    the SCPN dev/test files). Returns (clean index, transferred index) for every transferred row.

    A monotone alignment by dynamic programming: transferred row j pairs with clean row
    j + d_j, where d_j (rows dropped so far) never decreases and is at most
    D = len(clean) - len(transferred); the alignment maximises the summed word overlap
    (Jaccard) of the pairs, and with `match_labels` a pair must have equal labels (the
    transfers keep their original labels). Cost O(len(transferred) * (D + 1)). With D = 0
    it is the row-by-row pairing.
    """
    n, m = len(clean), len(transferred)
    drops = n - m
    if drops < 0:
        raise ValueError(f"the transferred file has more rows ({m}) than the clean one ({n})")
    gain = _diagonal_jaccard([t for t, _ in clean], [t for t, _ in transferred], drops)
    if match_labels:
        clean_labels = np.array([label for _, label in clean])
        transferred_labels = np.array([label for _, label in transferred])
        for d in range(drops + 1):
            gain[clean_labels[d : d + m] != transferred_labels, d] = -np.inf
    positions = np.arange(drops + 1)
    score = np.zeros(drops + 1)  # best total so far, by rows dropped so far (d)
    back = np.empty((m, drops + 1), dtype=np.int32)  # the previous row's d' <= d that was best
    for j in range(m):
        best_prev = np.maximum.accumulate(score)
        new_best = score >= np.concatenate(([-np.inf], best_prev[:-1]))
        back[j] = np.maximum.accumulate(np.where(new_best, positions, 0))
        score = best_prev + gain[j]
    d = int(np.argmax(score))
    if not np.isfinite(score[d]):
        raise ValueError("no alignment respects the labels: the files do not belong together")
    pairs: list[tuple[int, int]] = []
    for j in range(m - 1, -1, -1):
        pairs.append((j + d, j))
        d = int(back[j][d])
    return pairs[::-1]


# ---- pairs per style and split ---------------------------------------------------------------
def load_style_pairs(style: str, split: str, style_dir: str | None = None) -> list[StylePair]:
    """Every (clean sentence, transferred sentence, true label) of one style and split.
    UserError when the style is unknown or its files are missing; a StyleDataWarning when the
    transferred file duplicates another style's file of the same split."""
    transferred_path = style_file(style, split, style_dir)
    clean_path = style_file(style, split, style_dir, clean=True)
    _warn_if_duplicate(style, split, transferred_path, style_dir)
    return list(_pairs(style, split, str(clean_path), str(transferred_path)))


@functools.lru_cache(maxsize=32)
def _pairs(style: str, split: str, clean_path: str, transferred_path: str) -> tuple[StylePair, ...]:
    clean = read_style_tsv(Path(clean_path))
    transferred = read_style_tsv(Path(transferred_path))
    if STYLES[style].family == "hiddenkiller":
        if split == "train":
            # the poisoned training file is row-aligned; its changed rows are the paraphrases
            if len(transferred) != len(clean):
                raise UserError(
                    f"{transferred_path}: {len(transferred)} rows, expected {len(clean)} (row-aligned with clean)"
                )
            return tuple(
                StylePair(c_text, t_text, c_label)
                for (c_text, c_label), (t_text, _) in zip(clean, transferred)
                if c_text != t_text
            )
        # dev/test: paraphrases of the clean negatives only, all labelled 1 upstream
        negatives = [row for row in clean if row[1] == 0]
        pairs = align_in_order(negatives, transferred, match_labels=False)
        return tuple(StylePair(negatives[i][0], transferred[j][0], 0) for i, j in pairs)
    pairs = align_in_order(clean, transferred, match_labels=True)
    return tuple(StylePair(clean[i][0], transferred[j][0], clean[i][1]) for i, j in pairs)


def transfer_lookup(style: str, split: str, style_dir: str | None = None) -> dict[str, str]:
    """sentence_key(clean sentence) -> its transferred version (first one where the clean file
    repeats a sentence)."""
    lookup: dict[str, str] = {}
    for pair in load_style_pairs(style, split, style_dir):
        lookup.setdefault(sentence_key(pair.clean), pair.transferred)
    return lookup


# Upstream defects: (style, split) -> (the style whose file it duplicates, what is wrong).
KNOWN_DUPLICATES = {("tweets", "test"): "poetry"}


def _warn_if_duplicate(style: str, split: str, path: Path, style_dir: str | None) -> None:
    """Warn when the file still is the known upstream copy of another style's file."""
    original = KNOWN_DUPLICATES.get((style, split))
    if original is None:
        return
    other_path = resolve_style_dir(style_dir) / STYLES[original].transferred / path.name
    if other_path.is_file() and _sha256(str(other_path)) == _sha256(str(path)):
        warnings.warn(
            f"style set {style!r} {split}: {path} is byte-identical to the {original!r} set's file (an upstream "
            f"bug in thunlp/StyleAttack), so its text is in the {original!r} style, not {style!r}",
            StyleDataWarning,
            stacklevel=3,
        )


@functools.lru_cache(maxsize=64)
def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
