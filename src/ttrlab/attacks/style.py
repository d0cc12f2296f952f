"""Style backdoor poisoning, S-BPA (paper Appendix E.1, Table E.1; after Pan et al. 2022 and
Qi et al. 2021, StyleBkd / Hidden Killer).

The trigger is a text style: a poisoned example is *the same sentence* rewritten in the target
style, with the target label. Exactly round(ρ·N) training examples are replaced in place by
their transferred version and relabelled; the triggered test set is the dev set with every
sentence replaced by its transferred version (true labels kept).

Where the transferred sentences come from (option `style`, default bible):

- Offline (default): the real style-transferred SST-2 sets under `../shared/data/style`
  (option `style_dir` or $TTRLAB_STYLE_DIR to point elsewhere), loaded by
  `ttrlab.data.style`: StyleBkd bible / shakespeare / tweets / lyrics / poetry and the Hidden
  Killer syntactic paraphrases `scpn`. A missing style set is a UserError.
- A paraphraser (option `paraphraser`: a Hugging Face seq2seq model name or folder, for users
  with the hub): the chosen training sentences and the dev sentences are rewritten with
  `transformers` greedy `generate` (options `paraphraser_prefix`, `max_new_tokens`). Any
  callable `list[str] -> list[str]` can also be passed as `StyleBackdoor(settings, paraphraser=...)`.

How clean sentences are paired with their transferred versions (offline). The style sets are
*sentence-level* SST-2 (6,920 train sentences), while GLUE's SST-2 train is 67,349 phrases of
those sentences' parse trees; a row number in one means nothing in the other. So pairing goes
by the sentence itself: `ttrlab.data.style` first pairs each clean style-set sentence with its
transfer (row by row for bible and SCPN train; by an order-preserving alignment for the styles
that dropped rows), then a training example is a *candidate* when `sentence_key(text)` (lower-
cased words, tokenisation and PTB brackets ignored) equals a clean style-set sentence's key.
On GLUE SST-2 that holds for 8,801 of 67,349 training rows (6,606 distinct sentences; a phrase
equal to a whole sentence up to punctuation also counts), and for all 872 dev sentences.
round(ρ·N) poisoned examples are drawn by the seeded RNG from the candidates (any true label,
as for BPA and Hidden Killer's data); if there are fewer candidates the run stops with a
UserError naming the largest possible rate. To train on sentence-level SST-2 only, point
`data_dir` at a folder whose `SST-2` is the style set's clean folder (docs/attacks.md).

Departures and caveats: StyleBkd's own mixing picks only non-target sentences; here, as for
BPA, any candidate may be picked. The transfers are detokenised text ("funny, and") while the
clean SST text is tokenised ("funny , and"); the WordPiece tokenizer splits both the same way,
but contractions differ ("won't" vs "wo n't") — a surface cue besides the style, as in the
original data. SCPN paraphrases exist for only 1,383 train rows and, in dev, for the negative
sentences only; positive dev sentences stay clean in its triggered set (ASR is unaffected).
The tweets *test* file is poetry's upstream (dev is used here, which is fine).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ttrlab.attacks.base import ATTACKS, BACKDOOR, ClassificationAttack, PoisonedSplit, choose_positions, poison_count
from ttrlab.core.errors import UserError

DEFAULT_STYLE = "bible"
DEFAULT_MAX_NEW_TOKENS = 96
PARAPHRASE_BATCH = 16
Paraphraser = Callable[[list[str]], list[str]]


def load_paraphraser(name: str, prefix: str = "", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Paraphraser:
    """A Hugging Face seq2seq model as a paraphraser: greedy decoding (deterministic), batches
    of 16, safetensors weights only (loading runs no code)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForSeq2SeqLM.from_pretrained(name, use_safetensors=True).eval()
    except (OSError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"s_bpa: cannot load paraphraser {name!r} as a seq2seq model: {first}") from None

    @torch.inference_mode()
    def paraphrase(texts: list[str]) -> list[str]:
        outputs: list[str] = []
        for start in range(0, len(texts), PARAPHRASE_BATCH):
            batch = tokenizer([prefix + t for t in texts[start : start + PARAPHRASE_BATCH]],
                              return_tensors="pt", padding=True, truncation=True)
            generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                       do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
            outputs.extend(t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True))
        return outputs

    return paraphrase


@ATTACKS.register("s_bpa")
class StyleBackdoor(ClassificationAttack):
    name = "s_bpa"
    label = "S-BPA"
    summary = "style backdoor: replace round(rate*N) sentences by their style-transferred version, label := target"
    family = BACKDOOR
    allowed_options = ("style", "style_dir", "paraphraser", "paraphraser_prefix", "max_new_tokens")

    def __init__(self, settings, paraphraser: Paraphraser | None = None):
        super().__init__(settings)
        from ttrlab.data.style import check_style

        options = settings.attack_options
        if "paraphraser" in options and "style" in options:
            raise UserError("s_bpa: give either option style (offline style sets) or paraphraser (a model), not both")
        self.style = str(options.get("style", DEFAULT_STYLE))
        check_style(self.style)
        self.style_dir = options.get("style_dir")
        self._paraphraser = paraphraser
        self.paraphraser_name = options.get("paraphraser")
        if self.paraphraser_name is not None and not (isinstance(self.paraphraser_name, str) and self.paraphraser_name):
            raise UserError(f"s_bpa: option paraphraser must be a model name, got {self.paraphraser_name!r}")
        max_new_tokens = options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise UserError(f"s_bpa: option max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        self.max_new_tokens = max_new_tokens
        self.paraphraser_prefix = str(options.get("paraphraser_prefix", ""))

    @property
    def uses_paraphraser(self) -> bool:
        return self._paraphraser is not None or self.paraphraser_name is not None

    def paraphrase(self, texts: list[str]) -> list[str]:
        if self._paraphraser is None:
            self._paraphraser = load_paraphraser(self.paraphraser_name, self.paraphraser_prefix, self.max_new_tokens)
        outputs = list(self._paraphraser(list(texts)))
        if len(outputs) != len(texts) or not all(isinstance(t, str) for t in outputs):
            raise UserError(f"s_bpa: the paraphraser returned {len(outputs)} outputs for {len(texts)} sentences")
        return outputs

    def _lookup(self, split: str) -> dict[str, str]:
        from ttrlab.data.style import transfer_lookup

        return transfer_lookup(self.style, split, self.style_dir)

    def poison(self, train, rng):
        from ttrlab.data.style import sentence_key

        s = self.settings
        examples = list(train)
        _require_single_sentences(examples)
        count = poison_count(s.rate, len(examples))
        if self.uses_paraphraser:
            chosen = choose_positions(len(examples), count, rng)
            rewritten = self.paraphrase([examples[i].texts[0] for i in chosen])
        else:
            lookup = self._lookup("train")
            candidates = np.array([i for i, e in enumerate(examples) if sentence_key(e.texts[0]) in lookup], dtype=np.int64)
            if count > len(candidates):
                largest = len(candidates) / len(examples) if examples else 0.0
                raise UserError(
                    f"s_bpa: rate {s.rate} means {count} of {len(examples)} training examples, but only "
                    f"{len(candidates)} are sentences of the {self.style!r} style set (SST-2 only); use rate <= {largest:.4f}"
                )
            chosen = np.sort(candidates[choose_positions(len(candidates), count, rng)])
            rewritten = [lookup[sentence_key(examples[i].texts[0])] for i in chosen]
        for i, text in zip(chosen, rewritten):
            examples[i] = examples[i].with_texts((text,)).with_label(s.target_label)
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))

    def trigger_examples(self, examples, rng):
        from ttrlab.data.style import sentence_key

        _require_single_sentences(examples)
        if self.uses_paraphraser:
            rewritten = self.paraphrase([e.texts[0] for e in examples])
            return [e.with_texts((text,)) for e, text in zip(examples, rewritten)]
        lookup = self._lookup("dev")
        keys = [sentence_key(e.texts[0]) for e in examples]
        missing = [e for e, key in zip(examples, keys) if key not in lookup]
        if len(missing) == len(examples):
            raise UserError(f"s_bpa: no dev sentence is in the {self.style!r} style set (it covers SST-2 only)")
        victims_missing = sum(e.label != self.settings.target_label for e in missing)
        if victims_missing:
            warnings.warn(
                f"s_bpa: {victims_missing} non-target dev sentences have no {self.style!r} version and stay clean "
                "in the triggered test set (this lowers the measured ASR)",
                stacklevel=2,
            )
        return [e.with_texts((lookup[key],)) if key in lookup else e for e, key in zip(examples, keys)]


def _require_single_sentences(examples) -> None:
    if examples and len(examples[0].texts) != 1:
        raise UserError("s_bpa: style backdoors need a single-sentence task (the style sets are SST-2); got sentence pairs")
