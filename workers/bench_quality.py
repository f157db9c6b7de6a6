"""Quality metrics for benchmarks: causal-LM loss/perplexity and encoder embeddings.

Functions here take a loaded model and tokenizer and plain texts; loading models,
applying adapters and recording results is :mod:`workers.bench`'s job. Everything is
deterministic for a given model, device and thread count: inputs are processed in file
order, in fixed batches, with no sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True, slots=True)
class TextPair:
    """Two texts and a similarity score (STS-style), for the encoder's Spearman metric."""

    text: str
    text_pair: str
    score: float


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """The token sequences one eval set contributes, and how the budget shaped them."""

    sequences: list[list[int]]
    #: Index in the eval set of the text each sequence came from.
    indices: list[int]
    #: Documents in the eval set, and how many of them were (at least partly) used.
    texts_total: int
    texts_used: int
    #: Sequences cut short by ``max_length`` or by the end of the budget.
    truncated: int

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


@dataclass(frozen=True, slots=True)
class LossStats:
    """Token-level loss of a causal LM: every predicted token weighs the same."""

    loss: float
    perplexity: float
    #: Tokens whose next token was predicted (each sequence predicts len - 1).
    predicted_tokens: int
    input_tokens: int
    sequences: int
    texts_used: int
    texts_total: int
    truncated: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def budget_tokens(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_tokens: int,
    max_length: int,
    min_length: int = 1,
    split_last: bool = True,
) -> TokenBudget:
    """Tokenize ``texts`` in order until ``max_tokens`` tokens are collected.

    Each text is truncated to ``max_length`` tokens. With ``split_last`` the text that
    crosses the budget is cut to fit it (losses average over tokens, so a partial
    document is fine); without it (embeddings, where a cut text is another text) it is
    left out and the budget ends there. Texts shorter than ``min_length`` tokens are
    skipped (a one-token sequence predicts nothing).
    """
    sequences: list[list[int]] = []
    indices: list[int] = []
    total = truncated = 0
    for index, text in enumerate(texts):
        remaining = max_tokens - total
        if remaining < min_length:
            break
        # One token more than allowed tells a text that fits exactly from one that was cut.
        encoded = tokenizer(text, truncation=True, max_length=max_length + 1)["input_ids"]
        ids: list[int] = list(encoded)[:max_length]
        cut = len(encoded) > max_length
        if len(ids) > remaining:
            if not split_last and sequences:
                break
            ids, cut = ids[:remaining], True
        if len(ids) < min_length:
            continue
        sequences.append(ids)
        indices.append(index)
        total += len(ids)
        truncated += cut
    return TokenBudget(sequences, indices, len(texts), len(indices), truncated)


def _batch(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask. Right padding keeps each real token's
    positions and causal context exactly what they are without padding."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def pad_token_id(tokenizer: Any) -> int:
    """Any id works (padded positions are masked out of attention and loss)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def causal_lm_loss(
    model: Any, budget: TokenBudget, *, batch_size: int, pad_id: int, device: torch.device | str
) -> LossStats:
    """Mean next-token cross-entropy over every predicted token of ``budget``."""
    import torch
    import torch.nn.functional as F

    # Summed in float64 on the host: thousands of float32 partial sums would otherwise
    # add rounding that depends on the batch size.
    loss_sum = 0.0
    count = 0
    seqs = budget.sequences
    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            ids, mask = _batch(seqs[start : start + batch_size], pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            # Our own loss rather than the model's: HF averages per batch, and we want the
            # token-level mean over the whole eval set, computed in float32 whatever the
            # model's dtype.
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            losses = F.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100, reduction="sum"
            )
            loss_sum += float(losses.double())
            count += int((targets != -100).sum())
    mean = loss_sum / count if count else math.nan
    return LossStats(
        loss=mean,
        perplexity=math.exp(mean) if count else math.nan,
        predicted_tokens=count,
        input_tokens=budget.tokens,
        sequences=len(seqs),
        texts_used=budget.texts_used,
        texts_total=budget.texts_total,
        truncated=budget.truncated,
    )


def mean_pooled(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    device: torch.device | str,
) -> torch.Tensor:
    """Attention-mask-weighted mean of the last hidden states (sentence-transformers'
    pooling for MiniLM-style encoders), float32 on the CPU, one row per text."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())
    return torch.cat(rows) if rows else torch.empty(0, 0)


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity (float64, so 1.0 means 1.0 for identical rows)."""
    import torch

    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties sharing their average rank (scipy's default method)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    # Start of each run of equal values, then each run's average 1-based rank.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rho (Pearson correlation of tie-averaged ranks), or None when it is
    undefined (fewer than two values, or either side constant)."""
    import numpy as np

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("spearman needs two 1-D sequences of the same length")
    if len(a) < 2:
        return None
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    if denom == 0.0:
        return None
    return float((ra * rb).sum()) / denom


@dataclass(frozen=True, slots=True)
class EncoderStats:
    """What one encoder (base or base + stack) does on an eval set."""

    embeddings: torch.Tensor
    texts_used: int
    texts_total: int
    tokens: int
    pair_cosines: list[float]
    spearman: float | None

    def summary(self) -> dict[str, Any]:
        return {
            "texts_used": self.texts_used,
            "texts_total": self.texts_total,
            "tokens": self.tokens,
            "pairs": len(self.pair_cosines),
            "spearman": self.spearman,
        }


def encoder_stats(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[TextPair],
    *,
    max_tokens: int,
    max_length: int,
    max_pairs: int,
    batch_size: int,
    device: torch.device | str,
) -> EncoderStats:
    """Embeddings of the budgeted texts, and Spearman(cosine, score) over the pairs."""
    budget = budget_tokens(
        tokenizer, texts, max_tokens=max_tokens, max_length=max_length, split_last=False
    )
    chosen = [texts[i] for i in budget.indices]
    kwargs: dict[str, Any] = {"batch_size": batch_size, "max_length": max_length, "device": device}
    embeddings = mean_pooled(model, tokenizer, chosen, **kwargs)
    cosines: list[float] = []
    rho = None
    used_pairs = list(pairs[:max_pairs])
    if used_pairs:
        left = mean_pooled(model, tokenizer, [p.text for p in used_pairs], **kwargs)
        right = mean_pooled(model, tokenizer, [p.text_pair for p in used_pairs], **kwargs)
        cosines = [float(c) for c in cosine_rows(left, right)]
        rho = spearman(cosines, [p.score for p in used_pairs])
    return EncoderStats(embeddings, budget.texts_used, len(texts), budget.tokens, cosines, rho)
