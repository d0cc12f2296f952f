"""The packed layout of a fused step, and the parts of the model that must see each run's own
batch: attention and dropout.

A fused step packs the real (non-padding) tokens of the K runs' batches into one column of
`N` tokens, shape (N, 1): every token a "sequence" of length 1 to the model. Whatever the
model does token by token (embeddings, every linear layer, layer norms, activations: nearly
all of its arithmetic) then runs once over all N tokens with no padding at all. Two things
need each run's own batch back, in the padded (rows, length) layout it has alone:

- **Attention** (registered with transformers' `AttentionInterface` under `ATTENTION`) unpacks
  each run's queries, keys and values to its batch, calls the model's own attention
  implementation with the mask transformers would build for that batch, and packs the result.
- **Dropout.** Alone, a run's masks come from the global generator seeded with its seed, drawn
  site after site (embeddings, attention probabilities, hidden states, the head) in the shapes
  of its own batch. Every dropout site (`RoutedDropout`) and the attention call draw each run's
  masks in its own batch's shape with the generator set to that run's state
  (`PackedStep.own_rng`), and keep the advanced state for the run's next draw.

So each run computes what it computes alone, except for the order in which float sums are
added (round-off), and its result does not depend on the group it trained in.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

import torch

ATTENTION = "ttrlab_fused"
_active: contextvars.ContextVar[PackedStep | None] = contextvars.ContextVar("ttrlab_fused_step", default=None)


@dataclass
class RunBatch:
    """Where one run's batch lies in the packed step."""

    attention_mask: torch.Tensor  # (rows, length), its own padded batch
    first_token: int  # its first token in the packed column
    first_row: int  # its first sequence among the packed sequences
    real: torch.Tensor = field(init=False)  # flat positions of its real tokens in (rows * length)

    def __post_init__(self):
        self.real = self.attention_mask.reshape(-1).nonzero().squeeze(1)

    @property
    def rows(self) -> int:
        return self.attention_mask.shape[0]

    @property
    def length(self) -> int:
        return self.attention_mask.shape[1]

    @property
    def tokens(self) -> slice:
        return slice(self.first_token, self.first_token + len(self.real))

    @property
    def sequences(self) -> slice:
        return slice(self.first_row, self.first_row + self.rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(its tokens, *rest) → (rows, length, *rest), zeros at the padding."""
        padded = x.new_zeros((self.rows * self.length, *x.shape[1:])).index_copy(0, self.real.to(x.device), x)
        return padded.view(self.rows, self.length, *x.shape[1:])

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, length, *rest) → (its tokens, *rest)."""
        return x.reshape(self.rows * self.length, *x.shape[2:]).index_select(0, self.real.to(x.device))


@dataclass
class PackedStep:
    """The runs' random states (kept between steps) and this step's packed batches."""

    rng_states: list[torch.Tensor]  # per run: the global generator's state, as alone
    device: torch.device
    runs: list[RunBatch] = field(default_factory=list)
    masks: dict[int, object] = field(default_factory=dict)  # per run: its attention mask this step

    @classmethod
    def seeded(cls, seeds: list[int], device: torch.device) -> PackedStep:
        """Each run's state as `torch.manual_seed(seed)` leaves it (what a run alone starts from)."""
        states = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for seed in seeds:
                torch.manual_seed(seed)
                states.append(_get_state(device))
        return cls(states, device)

    def pack(self, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Lay out this step's batches (one per run, each right-padded to its own length): the
        packed model inputs (N, 1) with each token's position in its sentence, the index of
        every sequence's first token (where a BERT-style head reads), and the labels."""
        self.runs, self.masks = [], {}
        first_token = first_row = 0
        columns: dict[str, list[torch.Tensor]] = {}
        for batch in batches:
            mask = batch["attention_mask"].bool()
            run = RunBatch(mask, first_token, first_row)
            self.runs.append(run)
            positions = torch.arange(run.length).expand(run.rows, -1)
            for key, value in (*((k, v) for k, v in batch.items() if k not in ("labels", "attention_mask")),
                               ("position_ids", positions)):
                columns.setdefault(key, []).append(value.reshape(-1)[run.real])
            first_token += len(run.real)
            first_row += run.rows
        packed = {key: torch.cat(values).unsqueeze(1) for key, values in columns.items()}
        starts = [torch.cumsum(b["attention_mask"].sum(1), 0) - b["attention_mask"].sum(1) + r.first_token
                  for b, r in zip(batches, self.runs)]
        packed["first_tokens"] = torch.cat(starts)
        packed["labels"] = torch.cat([b["labels"] for b in batches])
        return packed

    @contextlib.contextmanager
    def own_rng(self, k: int):
        """The global generator in run k's state; run k's advanced state kept afterwards."""
        outer = _get_state(self.device)
        _set_state(self.device, self.rng_states[k])
        try:
            yield
        finally:
            self.rng_states[k] = _get_state(self.device)
            _set_state(self.device, outer)

    @contextlib.contextmanager
    def active(self):
        """Route the attention and dropout sites of the forward passes in this block."""
        token = _active.set(self)
        try:
            yield
        finally:
            _active.reset(token)


class RoutedDropout(torch.nn.Dropout):
    """`nn.Dropout` that, inside `PackedStep.active()`, applies each run's dropout to its own
    batch: packed tokens (N, 1, hidden) are unpacked to the run's (rows, length, hidden), head
    inputs (sequences, hidden) cut to its rows. Elsewhere (evaluation, a run alone) it is
    `nn.Dropout`. `run` pins it to one run where it only sees that run's tokens (a LoRA
    adapter's own dropout)."""

    def __init__(self, p: float, inplace: bool = False, run: int | None = None):
        super().__init__(p, inplace)
        self.run = run

    @classmethod
    def replacing(cls, dropout: torch.nn.Dropout, run: int | None = None) -> RoutedDropout:
        return cls(dropout.p, dropout.inplace, run)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = _active.get()
        if step is None or not self.training or self.p == 0:
            return super().forward(x)
        if self.run is not None:
            return self._own(step, self.run, x)
        parts = [x[run.tokens] if x.dim() == 3 else x[run.sequences] for run in step.runs]
        return torch.cat([self._own(step, k, part) for k, part in enumerate(parts)])

    def _own(self, step: PackedStep, k: int, x: torch.Tensor) -> torch.Tensor:
        run = step.runs[k]
        with step.own_rng(k):
            if x.dim() == 2:  # one vector per sequence: already the run's own shape
                return super().forward(x)
            return run.pack(super().forward(run.unpack(x[:, 0]))).unsqueeze(1)


def routed_attention(implementation, build_mask):
    """An attention function (transformers' interface: module, query, key, value, mask, ...)
    that, in a packed step, runs `implementation` once per run on that run's own batch with the
    mask `build_mask(run)` gives (what transformers passes for that batch alone)."""

    def attention(module, query, key, value, attention_mask, dropout: float = 0.0, **kwargs):
        step = _active.get()
        if step is None:
            return implementation(module, query, key, value, attention_mask, dropout=dropout, **kwargs)
        outputs = []
        for k, run in enumerate(step.runs):
            # packed (N, heads, 1, dim) → the run's (rows, heads, length, dim)
            q, kk, v = (run.unpack(t[run.tokens, :, 0]).transpose(1, 2) for t in (query, key, value))
            if k not in step.masks:
                step.masks[k] = build_mask(run, query)
            with step.own_rng(k):
                out, _ = implementation(module, q, kk, v, step.masks[k], dropout=dropout, **kwargs)
            outputs.append(run.pack(out))  # out: (rows, length, heads, dim)
        return torch.cat(outputs).unsqueeze(1), None

    return attention


def _get_state(device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def _set_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
    else:
        torch.set_rng_state(state)
