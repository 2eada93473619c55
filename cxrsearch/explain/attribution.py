"""Integrated Gradients on the hit radiograph's pixels, through the whole model.

``f(x) = target(model.fuse(image_tower(x), text))`` where ``x`` is the ``[1, 1, S, S]`` grey model
input in ``[0, 1]`` (normalisation happens inside the image tower, so attributions are about real
pixel intensities) and ``text`` is the hit's report through the text tower. The text tower's output
does not depend on ``x``, so it is computed once and reused at every step: that is exactly the same
function, at a fraction of the cost. Everything that ``x`` flows through (image tower, projections,
every fusion layer, the joint projection or the label head) is differentiated.

Integrated Gradients (Sundararajan et al. 2017) with Captum: ``attr = (x - b) * mean_k grad f(b +
a_k (x - b))`` over ``steps`` Gauss-Legendre points ``a_k``. Completeness: ``attr.sum() = f(x) -
f(b)`` up to the integration error, reported as ``delta`` (the same quantity Captum calls the
convergence delta). Baselines ``b`` (see docs/explain.md for why):

``black``  every pixel at the letterbox padding value (0 = black = no X-ray attenuation in every
           shipped config): "an empty film". Padding equals the baseline, so it gets exactly zero.
``blur``   the film blurred with a Gaussian of sigma ``S / 16``, padding kept: attributes structure
           (edges, texture, small opacities) rather than overall brightness.

Only input gradients are needed, so parameters are frozen while attributing (about a third less
backward work) and the model is in eval mode (no dropout: deterministic). ``internal_batch_size``
interpolation points go through the model at once, so memory stays flat whatever ``steps`` is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.explain.target import Target
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.output import ImageFeatures, TextFeatures

BASELINES = ("black", "blur")
DEFAULT_STEPS = 32
DEFAULT_INTERNAL_BATCH = 8
MAX_STEPS = 1024


@dataclass(frozen=True)
class PixelAttribution:
    """Integrated Gradients over the model canvas.

    Attributes:
        attributions: ``float32 [S, S]`` signed attribution of every canvas pixel (positive: the
            pixel's intensity raised the score relative to the baseline).
        score: ``f(x)``, the explained score of the hit as it is.
        baseline_score: ``f(b)``.
        delta: ``attributions.sum() - (score - baseline_score)``: the integration error.
        baseline: ``"black"`` or ``"blur"``.
        steps: integration steps; ``internal_batch_size``: points per forward pass.
        seconds: wall time of the attribution.
    """

    attributions: np.ndarray
    score: float
    baseline_score: float
    delta: float
    baseline: str
    steps: int
    internal_batch_size: int
    seconds: float

    @property
    def relative_delta(self) -> float:
        """``|delta| / |score - baseline_score|`` (``inf`` when the score did not move)."""
        moved = abs(self.score - self.baseline_score)
        return abs(self.delta) / moved if moved > 0 else (0.0 if self.delta == 0 else float("inf"))


def check_steps(steps: int, internal_batch_size: int) -> None:
    """:class:`QueryError` unless ``1 <= steps <= MAX_STEPS`` and ``internal_batch_size >= 1``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise QueryError(f"--steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}")
    if isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int) or internal_batch_size < 1:
        raise QueryError(f"internal batch size must be a positive integer, got {internal_batch_size!r}")


@contextmanager
def attribution_mode(model: FusionModel) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration; the previous state is restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


def repeat_image(features: ImageFeatures, n: int) -> ImageFeatures:
    """One hit's image features seen as a batch of ``n`` (views, no copy)."""
    from cxrsearch.model.output import ImageFeatures

    return ImageFeatures(tokens=features.tokens.expand(n, -1, -1), pooled=features.pooled.expand(n, -1), grid=features.grid)


def repeat_text(features: TextFeatures, n: int) -> TextFeatures:
    """One hit's text features seen as a batch of ``n`` (views, no copy)."""
    from cxrsearch.model.output import TextFeatures

    return TextFeatures(tokens=features.tokens.expand(n, -1, -1), mask=features.mask.expand(n, -1), pooled=features.pooled.expand(n, -1))


def make_baseline(pixels: torch.Tensor, kind: str, film_box: tuple[int, int, int, int], pad_value: float) -> torch.Tensor:
    """The IG baseline for ``pixels`` ``[1, 1, S, S]``; ``film_box`` is ``(top, left, bottom, right)``."""
    import torch

    if kind not in BASELINES:
        raise QueryError(f"unknown baseline {kind!r} (use one of: {', '.join(BASELINES)})")
    if kind == "black":
        return torch.full_like(pixels, float(pad_value))
    from torchvision.transforms.functional import gaussian_blur

    size = pixels.shape[-1]
    sigma = size / 16.0
    kernel = 2 * int(3 * sigma) + 1
    blurred = gaussian_blur(pixels, [kernel, kernel], [sigma, sigma])
    film = torch.zeros_like(pixels, dtype=torch.bool)
    top, left, bottom, right = film_box
    film[..., top:bottom, left:right] = True
    return torch.where(film, blurred, pixels)  # padding: baseline == input, so zero attribution


def pixel_attributions(
    model: FusionModel,
    pixels: torch.Tensor,
    target: Target,
    *,
    text: TextFeatures | None,
    film_box: tuple[int, int, int, int],
    steps: int = DEFAULT_STEPS,
    baseline: str = "black",
    internal_batch_size: int = DEFAULT_INTERNAL_BATCH,
) -> PixelAttribution:
    """Integrated Gradients of ``target`` w.r.t. the hit's canvas pixels ``[1, 1, S, S]``.

    ``text``: the hit's report through the text tower (``None`` for an image without a report);
    ``film_box``: the canvas region covered by film (``Geometry.image_box()``).
    """
    import torch
    from captum.attr import IntegratedGradients

    check_steps(steps, internal_batch_size)
    if pixels.ndim != 4 or pixels.shape[:2] != (1, 1):
        raise QueryError(f"pixel attributions explain one grey image [1, 1, S, S], got {list(pixels.shape)}")
    started = time.perf_counter()
    with attribution_mode(model):
        base = make_baseline(pixels, baseline, film_box, model.config.preprocess.pad_value)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            words = None if text is None else repeat_text(text, batch.shape[0])
            return target(model.fuse(model.encode_image(batch), words))

        attributions = IntegratedGradients(forward).attribute(
            pixels, baselines=base, n_steps=steps, internal_batch_size=internal_batch_size
        )
        with torch.no_grad():
            score, baseline_score = (float(v) for v in forward(torch.cat([pixels, base])))
    attr = attributions.detach()[0, 0].double().cpu().numpy()
    delta = float(attr.sum()) - (score - baseline_score)
    return PixelAttribution(
        attributions=attr.astype(np.float32),
        score=score,
        baseline_score=baseline_score,
        delta=delta,
        baseline=baseline,
        steps=steps,
        internal_batch_size=internal_batch_size,
        seconds=time.perf_counter() - started,
    )
