"""The preprocessing settings of a model (:class:`PreprocessConfig`), apart from ``cxrsearch.model``.

Kept here, with no model imports, so that :mod:`cxrsearch.image.preprocess` can use it without an
import cycle through the model modules; ``cxrsearch.model.config`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxrsearch.errors import ModelError


@dataclass(frozen=True)
class PreprocessConfig:
    """How a radiograph and a report become model inputs (stored in every checkpoint).

    Images: the grey ``(H, W)`` pixels in ``[0, 1]`` are resized to ``image_size`` square by
    ``resize``: ``"letterbox"`` (keep the aspect ratio, fit the long side, pad with ``pad_value``:
    nothing of the film is lost) or ``"center-crop"`` (fit the short side, crop the centre). The
    model input stays **one grey channel in [0, 1]**; inside the image tower it is replicated to
    ``channels`` (3 for ImageNet-pretrained towers, so the pretrained patch embedding is used
    unchanged) and normalised with ``mean`` / ``std``. Keeping the normalisation inside the model
    means Integrated Gradients attribute real pixel intensities (baseline 0 = black film).

    Text: tokenised to at most ``max_text_tokens`` tokens (special tokens included), truncating.
    """

    image_size: int = 224
    resize: str = "letterbox"
    interpolation: str = "bilinear"
    pad_value: float = 0.0
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    max_text_tokens: int = 256

    def __post_init__(self) -> None:
        if self.resize not in ("letterbox", "center-crop"):
            raise ModelError(f"preprocess resize must be 'letterbox' or 'center-crop', not {self.resize!r}")
        if self.interpolation not in ("bilinear", "bicubic", "area"):
            raise ModelError(f"preprocess interpolation must be bilinear, bicubic or area, not {self.interpolation!r}")
        if self.image_size < 8 or self.max_text_tokens < 2:
            raise ModelError("preprocess image_size must be >= 8 and max_text_tokens >= 2")
        if (
            self.channels not in (1, 3)
            or len(self.mean) != self.channels
            or len(self.std) != self.channels
            or min(self.std) <= 0
        ):
            raise ModelError("preprocess channels must be 1 or 3, with one mean and one std (> 0) per channel")
        if not 0.0 <= self.pad_value <= 1.0:
            raise ModelError(f"preprocess pad_value must be in [0, 1], not {self.pad_value}")
