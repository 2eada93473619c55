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

``precision``: ``fp32``, or ``bf16``: the towers (Swin, BERT: nearly all the compute) run under
``torch.autocast`` (matrix products in bfloat16, float32 accumulation; attributions about 2x faster
on CPUs with native bfloat16, e.g. Intel AMX), and their outputs go on in float32 through the fusion layers and
the score, so the score keeps float32 resolution. The integrated function is then that model,
consistently: ``f(x)``, ``f(b)`` and the gradients all come from it, so completeness holds up to the
reported ``delta``. ``auto`` (see :func:`resolve_precision`) picks bf16 only where the hardware
computes it natively; the choice is reported with the results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrsearch.errors import QueryError
from cxrsearch.model.output import ImageFeatures, TextFeatures

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.explain.target import Target
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.output import ImageFeatures, TextFeatures

BASELINES = ("black", "blur")
PRECISIONS = ("fp32", "bf16")
DEFAULT_STEPS = 32
DEFAULT_INTERNAL_BATCH = 8  # fp32 pixels: larger batches only cost memory (docs/performance.md)
BF16_INTERNAL_BATCH = 16  # bf16 pixels: 16 points per pass were ~10 % faster than 8, 32 slower
TOKEN_INTERNAL_BATCH = 32  # tokens: small activations, so up to 32 points per pass
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
        seconds: wall time of the attribution; precision: ``fp32`` or ``bf16``.
    """

    attributions: np.ndarray
    score: float
    baseline_score: float
    delta: float
    baseline: str
    steps: int
    internal_batch_size: int
    seconds: float
    precision: str = "fp32"

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


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32``/``bf16`` as given; ``auto``: ``bf16`` where ``device`` computes bfloat16 natively,
    else ``fp32``: see :func:`native_bf16`."""
    if precision in PRECISIONS:
        return precision
    if precision != "auto":
        raise QueryError(f"unknown precision {precision!r} (use auto, {', '.join(PRECISIONS)})")
    return "bf16" if native_bf16(device) else "fp32"


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` compute bfloat16 in hardware? A CUDA GPU of compute capability 8.0 or newer
    (Ampere on; older GPUs emulate it), or a CPU with AVX512-BF16 or AMX (older AVX-512 CPUs emulate
    it, slower than fp32). A torch without the CPU probes counts as not native."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def default_batches(precision: str, steps: int) -> tuple[int, int]:
    """``(pixel, token)`` interpolation points per pass when the user did not choose."""
    pixel = BF16_INTERNAL_BATCH if precision == "bf16" else DEFAULT_INTERNAL_BATCH
    return min(pixel, steps), min(TOKEN_INTERNAL_BATCH, steps)


@contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` to bfloat16 for ``bf16``; nothing for ``fp32``."""
    import torch

    if precision not in PRECISIONS:
        raise QueryError(f"unknown precision {precision!r} (use one of: {', '.join(PRECISIONS)})")
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def image_tower(model: FusionModel, pixels: torch.Tensor, precision: str) -> ImageFeatures:
    """The image tower at ``precision``, its features back in float32 for the fusion and the score."""
    import dataclasses

    with autocast(precision, pixels.device):
        features = model.encode_image(pixels)
    return dataclasses.replace(features, tokens=features.tokens.float(), pooled=features.pooled.float())


def text_tower(model: FusionModel, ids: torch.Tensor, mask: torch.Tensor, precision: str) -> TextFeatures:
    """The text tower at ``precision``, its features back in float32 for the fusion and the score."""
    import dataclasses

    with autocast(precision, ids.device):
        features = model.encode_text(ids, mask)
    return dataclasses.replace(features, tokens=features.tokens.float(), pooled=features.pooled.float())


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

    return ImageFeatures(
        tokens=features.tokens.expand(n, -1, -1), pooled=features.pooled.expand(n, -1), grid=features.grid
    )


def repeat_text(features: TextFeatures, n: int) -> TextFeatures:
    """One hit's text features seen as a batch of ``n`` (views, no copy)."""

    return TextFeatures(
        tokens=features.tokens.expand(n, -1, -1), mask=features.mask.expand(n, -1), pooled=features.pooled.expand(n, -1)
    )


def make_baseline(
    pixels: torch.Tensor, kind: str, film_box: tuple[int, int, int, int], pad_value: float
) -> torch.Tensor:
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
    precision: str = "fp32",
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
            return target(model.fuse(image_tower(model, batch, precision), words))

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
        precision=precision,
    )
