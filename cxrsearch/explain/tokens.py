"""Token attributions for the hit's report, merged from word pieces back to words.

Layer Integrated Gradients (Captum) on the text tower's word-embedding layer: the report's token
embeddings are interpolated from a baseline to their real values while positions, the attention
mask and the hit's radiograph stay fixed; ``f`` is the same target as for the pixels, through the
text tower, the projections, the fusion layers and the heads. The image tower's output does not
depend on the text, so it is computed once and reused.

Baseline: the same token sequence with every word piece replaced by ``[PAD]`` (special tokens such
as ``[CLS]`` / ``[SEP]`` kept, the mask unchanged): "a report of the same length that says
nothing". Special tokens equal their baseline, so their attribution is exactly zero.

Per token: the attribution summed over the embedding dimensions. Per word: the sum over its pieces
(``card ##iom ##ega ##ly`` -> ``cardiomegaly``), so completeness holds for words too: word
attributions sum to ``f(report) - f(baseline)`` up to ``delta``. Words are the tokenizer's own
pre-tokenised words (punctuation is its own word), spelled as in the report via character offsets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import ModelError, QueryError
from cxrsearch.explain.attribution import (
    DEFAULT_INTERNAL_BATCH,
    DEFAULT_STEPS,
    attribution_mode,
    check_steps,
    repeat_image,
    text_tower,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.explain.target import Target
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.output import ImageFeatures
    from cxrsearch.model.text_tower import TextTower


@dataclass(frozen=True)
class WordAttribution:
    """One word of the report: ``text[start:end] == word``; ``pieces`` its word pieces."""

    word: str
    start: int
    end: int
    attribution: float
    pieces: tuple[str, ...]

    @property
    def is_punctuation(self) -> bool:
        return not any(ch.isalnum() for ch in self.word)


@dataclass(frozen=True)
class TokenAttribution:
    """Layer Integrated Gradients over the report's tokens.

    Attributes:
        text: the report text the model read.
        tokens: the ``T`` tokens (special tokens included) as the tokenizer spells them.
        token_attributions: ``float32 [T]`` per-token attribution (0 for special tokens).
        words: the report's words in order, with merged attributions.
        score, baseline_score, delta: ``f(report)``, ``f(baseline)`` and
            ``sum(token_attributions) - (score - baseline_score)``.
        truncated: the report was longer than the model's ``max_text_tokens`` (only the read part
            is attributed).
        steps, seconds: integration steps and wall time; precision: ``fp32`` or ``bf16`` (see
            :mod:`cxrsearch.explain.attribution`); internal_batch_size: points per pass.
    """

    text: str
    tokens: tuple[str, ...]
    token_attributions: np.ndarray
    words: tuple[WordAttribution, ...]
    score: float
    baseline_score: float
    delta: float
    truncated: bool
    steps: int
    seconds: float
    precision: str = "fp32"
    internal_batch_size: int = DEFAULT_INTERNAL_BATCH

    def top_words(self, k: int = 10) -> tuple[WordAttribution, ...]:
        """The ``k`` words with the largest ``|attribution|`` (punctuation-only words left out)."""
        words = [w for w in self.words if not w.is_punctuation]
        return tuple(sorted(words, key=lambda w: -abs(w.attribution))[:k])


def baseline_ids(input_ids: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """``input_ids`` with every non-special token replaced by the pad (else mask) token."""
    import torch

    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.mask_token_id
    if filler is None:
        raise ModelError("the tokenizer has neither a pad nor a mask token to build a token baseline from")
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    return torch.where(torch.isin(input_ids, special), input_ids, torch.full_like(input_ids, filler))


def merge_words(
    text: str,
    tokens: Sequence[str],
    scores: np.ndarray,
    word_ids: Sequence[int | None] | None,
    offsets: Sequence[tuple[int, int]] | None,
) -> tuple[WordAttribution, ...]:
    """Sum per-token ``scores`` into words.

    With a fast tokenizer, ``word_ids`` / ``offsets`` (per token; ``None`` word id = special token)
    give the words and their spelling in ``text``. Without them, pieces starting with ``##``
    (WordPiece continuations) join the previous token and words are spelled from the pieces.
    """
    groups: list[list[int]] = []
    if word_ids is not None and offsets is not None:
        last = None
        for i, wid in enumerate(word_ids):
            if wid is None:
                last = None
                continue
            if wid != last:
                groups.append([])
            groups[-1].append(i)
            last = wid
    else:
        for i, token in enumerate(tokens):
            if token.startswith("[") and token.endswith("]"):
                continue
            if token.startswith("##") and groups:
                groups[-1].append(i)
            else:
                groups.append([i])
    words: list[WordAttribution] = []
    cursor = 0
    for group in groups:
        pieces = tuple(tokens[i] for i in group)
        if offsets is not None and word_ids is not None:
            start, end = offsets[group[0]][0], offsets[group[-1]][1]
            word = text[start:end]
        else:
            word = "".join(p[2:] if p.startswith("##") else p for p in pieces)
            found = text.lower().find(word.lower(), cursor)
            start, end = (found, found + len(word)) if found >= 0 else (-1, -1)
            word = text[start:end] if found >= 0 else word
        cursor = max(cursor, end)
        words.append(
            WordAttribution(
                word=word,
                start=int(start),
                end=int(end),
                attribution=float(np.sum(scores[group], dtype=np.float64)),
                pieces=pieces,
            )
        )
    return tuple(words)


def token_attributions(
    model: FusionModel,
    text: str,
    target: Target,
    *,
    image: ImageFeatures | None,
    steps: int = DEFAULT_STEPS,
    internal_batch_size: int = DEFAULT_INTERNAL_BATCH,
    precision: str = "fp32",
) -> TokenAttribution:
    """Layer Integrated Gradients of ``target`` w.r.t. the word embeddings of the report ``text``.

    ``image``: the hit's radiograph through the image tower (``None`` for a report-only hit).
    """
    check_steps(steps, internal_batch_size)
    if not text.strip():
        raise QueryError("the hit has no report text to attribute")
    tokenizer = model.tokenizer
    max_tokens = model.config.preprocess.max_text_tokens
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(
        [text], truncation=True, max_length=max_tokens, return_tensors="pt", return_offsets_mapping=fast
    )
    full_length = len(tokenizer.tokenize(text)) + tokenizer.num_special_tokens_to_add(pair=False)
    device = next(model.parameters()).device
    input_ids = encoded["input_ids"].to(device)
    mask = encoded["attention_mask"].to(device)
    started = time.perf_counter()
    per_token, score, baseline_score = _integrate(
        model, input_ids, mask, target, image, steps, internal_batch_size, precision
    )
    tokens = tuple(tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist()))
    word_ids, offsets = _word_spans(encoded, fast)
    return TokenAttribution(
        text=text,
        tokens=tokens,
        token_attributions=per_token.astype(np.float32),
        words=merge_words(text, tokens, per_token, word_ids, offsets),
        score=score,
        baseline_score=baseline_score,
        delta=float(per_token.sum()) - (score - baseline_score),
        truncated=full_length > max_tokens,
        steps=steps,
        seconds=time.perf_counter() - started,
        precision=precision,
        internal_batch_size=internal_batch_size,
    )


def _integrate(
    model: FusionModel,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    target: Target,
    image: ImageFeatures | None,
    steps: int,
    internal_batch_size: int,
    precision: str,
) -> tuple[np.ndarray, float, float]:
    """Layer Integrated Gradients from the pad baseline: ``(per-token attributions [T], f(report),
    f(baseline))``."""
    import torch
    from captum.attr import LayerIntegratedGradients

    with attribution_mode(model):
        reference = baseline_ids(input_ids, model.tokenizer)

        def forward(ids: torch.Tensor) -> torch.Tensor:
            n = ids.shape[0]
            picture = None if image is None else repeat_image(image, n)
            return target(model.fuse(picture, text_tower(model, ids, mask.expand(n, -1), precision)))

        lig = LayerIntegratedGradients(forward, cast("TextTower", model.text_tower).input_embeddings)
        attributions = lig.attribute(
            input_ids, baselines=reference, n_steps=steps, internal_batch_size=internal_batch_size
        )
        with torch.no_grad():
            score, baseline_score = (float(v) for v in forward(torch.cat([input_ids, reference])))
    return attributions.detach()[0].double().sum(-1).cpu().numpy(), score, baseline_score


def _word_spans(encoded: Any, fast: bool) -> tuple[list[int | None] | None, list[tuple[int, int]] | None]:
    """Per token, its word id and character span in the report (``None``, ``None`` without a fast
    tokenizer)."""
    if not fast:
        return None, None
    offsets = [tuple(int(v) for v in pair) for pair in encoded["offset_mapping"][0].tolist()]
    return encoded.word_ids(0), cast(list[tuple[int, int]], offsets)
