"""The one place where radiographs and reports become tensors, and embeddings come out.

Training, indexing, search and explain all use :class:`Encoder`, so preprocessing (resize, pad or
crop, tokenizer max length) can never drift between them: it comes from the checkpoint's config.

    enc = Encoder(load_checkpoint(path))            # or Encoder(path), or Encoder(model) in training
    pixels, geometries = enc.prepare_images(decoded_images)   # [B, 1, S, S], one Geometry each
    batch = enc.tokenize(["heart size is normal"])            # {"input_ids", "attention_mask"}
    out = enc.encode(images=decoded_images, texts=reports)    # numpy Encoded
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cxrsearch.errors import ModelError
from cxrsearch.image.preprocess import preprocess_batch

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.image.decoded import DecodedImage
    from cxrsearch.image.preprocess import Geometry
    from cxrsearch.model.checkpoint import Checkpoint
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.numpy_text import NumpyTextModel
    from cxrsearch.model.onnx_image import OnnxImageModel


@dataclass(frozen=True)
class Encoded:
    """Embeddings and label predictions for a batch of B inputs (numpy, float32).

    Attributes:
        image: ``[B, D]`` L2-normalised image embeddings, or ``None`` without images.
        text: ``[B, D]`` L2-normalised text embeddings, or ``None`` without texts.
        joint: ``[B, D]`` L2-normalised fused embeddings.
        probs: ``[B, L]`` label probabilities (sigmoid of the logits), columns in ``labels`` order.
        predicted: per input, the labels whose probability is ``>=`` their threshold.
        labels: the label names (column order of ``probs``).
    """

    image: np.ndarray | None
    text: np.ndarray | None
    joint: np.ndarray
    probs: np.ndarray
    predicted: tuple[tuple[str, ...], ...]
    labels: tuple[str, ...]


class Encoder:
    """Turns decoded images and report texts into model inputs and embeddings.

    ``source``: a loaded :class:`~cxrsearch.model.checkpoint.Checkpoint`, a checkpoint directory,
    or a bare :class:`~cxrsearch.model.fusion.FusionModel` (training; thresholds default to 0.5
    unless given). The model is moved to ``device``. ``fingerprint`` is the checkpoint's weight
    fingerprint (``None`` for a bare model).

    ``towers``: with a checkpoint directory, the towers to load (default both); a text query needs
    ``("text",)``, an image query ``("image",)`` (see :func:`~cxrsearch.model.checkpoint.load_checkpoint`).
    Encoding a modality whose tower was not loaded raises :class:`ModelError`.
    """

    def __init__(
        self,
        source: Checkpoint | FusionModel | str | Path,
        device: str = "cpu",
        thresholds: Sequence[float] | None = None,
        towers: Sequence[str] | None = None,
        runtime: str = "torch",
    ) -> None:
        from cxrsearch.model.checkpoint import TOWERS, Checkpoint, load_checkpoint
        from cxrsearch.model.numpy_text import NumpyTextModel
        from cxrsearch.model.onnx_image import OnnxImageModel

        if isinstance(source, (str, Path)):
            source = load_checkpoint(
                source, device=device, towers=TOWERS if towers is None else towers, runtime=runtime
            )
        if isinstance(source, Checkpoint):
            self.checkpoint: Checkpoint | None = source
            self.model = source.model
            default_thresholds: Sequence[float] = source.thresholds
            self.fingerprint: str | None = source.fingerprint
        elif _is_fusion_model(source):
            self.checkpoint, self.model, self.fingerprint = None, source, None
            default_thresholds = [0.5] * len(source.labels)
        else:
            raise ModelError(
                f"Encoder needs a checkpoint, a checkpoint path or a FusionModel, not {type(source).__name__}"
            )
        self.device = str(device)
        self.numpy = isinstance(self.model, NumpyTextModel)
        self.onnx = isinstance(self.model, OnnxImageModel)
        if not (self.numpy or self.onnx):
            cast("FusionModel", self.model).to(self.device)
        self.config = self.model.config
        self.labels: tuple[str, ...] = self.model.labels
        values = np.asarray(default_thresholds if thresholds is None else thresholds, dtype=np.float32)
        if values.shape != (len(self.labels),):
            raise ModelError(f"{values.size} thresholds for {len(self.labels)} labels")
        self.thresholds = values

    @property
    def towers(self) -> tuple[str, ...]:
        """The modalities this encoder can embed (the towers its model holds)."""
        return self.model.towers

    # ------------------------------------------------------------------ inputs

    def prepare_images(self, images: Sequence[DecodedImage | np.ndarray]) -> tuple[torch.Tensor, list[Geometry]]:
        """Decoded images (or grey ``(H, W)`` arrays in ``[0, 1]``) -> (``[B, 1, S, S]`` on device, geometries)."""
        import torch

        arrays = cast(list[np.ndarray], [getattr(image, "pixels", image) for image in images])
        pixels, geometries = preprocess_batch(arrays, self.config.preprocess)
        return torch.from_numpy(pixels).to(self.device), geometries

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Report texts -> ``{"input_ids", "attention_mask"}`` ``[B, T]`` on device.

        Padded to the longest text of the batch, truncated to the checkpoint's ``max_text_tokens``.
        """
        if isinstance(texts, str) or not texts:
            raise ModelError("tokenize needs a non-empty list of texts")
        if not all(isinstance(text, str) for text in texts):
            raise ModelError("every text must be a string (a study without a report has no text input)")
        if self.numpy or self.onnx:
            raise ModelError(
                "a numpy- or onnx-runtime encoder makes no torch tensors (load the checkpoint with runtime='torch')"
            )
        batch = cast("FusionModel", self.model).tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.config.preprocess.max_text_tokens,
            return_tensors="pt",
        )
        return {
            "input_ids": batch["input_ids"].to(self.device),
            "attention_mask": batch["attention_mask"].to(self.device),
        }

    def predict(self, probs: np.ndarray) -> tuple[tuple[str, ...], ...]:
        """Thresholded label names for ``[B, L]`` probabilities."""
        hits = np.asarray(probs) >= self.thresholds[None, :]
        return tuple(tuple(label for label, on in zip(self.labels, row) if on) for row in hits)

    # ------------------------------------------------------------------ encoding

    def encode(
        self,
        images: Sequence[DecodedImage | np.ndarray] | None = None,
        texts: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> Encoded:
        """Embed images, texts, or image-text pairs (same length), in batches, without gradients."""
        if images is None and texts is None:
            raise ModelError("encode needs images, texts, or both")
        if images is not None and texts is not None and len(images) != len(texts):
            raise ModelError(f"{len(images)} images but {len(texts)} texts: pairs must line up")
        if batch_size < 1:
            raise ModelError("batch_size must be >= 1")
        for name, given in (("image", images), ("text", texts)):
            if given is not None and name not in self.towers:
                raise ModelError(f"this encoder was loaded without its {name} tower: it cannot embed {name}s")
        total = len(images) if images is not None else len(texts)  # type: ignore[arg-type]
        if total == 0:
            raise ModelError("nothing to encode (empty input)")
        if self.numpy:
            return self._encode_numpy(list(texts or ()), batch_size)
        if self.onnx:
            return self._encode_onnx(list(images or ()), batch_size)
        import torch

        model = cast("FusionModel", self.model)  # not numpy: a torch model
        parts: dict[str, list[np.ndarray]] = {"image": [], "text": [], "joint": [], "probs": []}
        was_training = model.training
        if was_training:  # eval() walks every module: once per call adds up over thousands of batches
            model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, total, batch_size):
                    inputs: dict[str, Any] = {}
                    if images is not None:
                        inputs["pixel_values"], _ = self.prepare_images(images[start : start + batch_size])
                    if texts is not None:
                        inputs.update(self.tokenize(texts[start : start + batch_size]))
                    out = model(**inputs)
                    for key, value in (
                        ("image", out.image_embedding),
                        ("text", out.text_embedding),
                        ("joint", out.joint_embedding),
                    ):
                        if value is not None:
                            parts[key].append(value.float().cpu().numpy())
                    parts["probs"].append(torch.sigmoid(out.logits).float().cpu().numpy())
        finally:
            if was_training:
                model.train(True)
        return self._encoded(parts)

    def _encode_numpy(self, texts: list[str], batch_size: int) -> Encoded:
        """Texts through the numpy text side (:mod:`cxrsearch.model.numpy_text`): no torch."""
        if not all(isinstance(text, str) for text in texts):
            raise ModelError("every text must be a string (a study without a report has no text input)")
        forward = cast("NumpyTextModel", self.model).forward
        return self._encode_torch_free(texts, batch_size, "text", forward)

    def _encode_onnx(self, images: list[DecodedImage | np.ndarray], batch_size: int) -> Encoded:
        """Films through the ONNX image side (:mod:`cxrsearch.model.onnx_image`): no torch."""

        def forward(batch: list[DecodedImage | np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            arrays = cast(list[np.ndarray], [getattr(image, "pixels", image) for image in batch])
            pixels, _ = preprocess_batch(arrays, self.config.preprocess)
            return cast("OnnxImageModel", self.model).forward(pixels)

        return self._encode_torch_free(images, batch_size, "image", forward)

    def _encode_torch_free(
        self,
        inputs: list[Any],
        batch_size: int,
        modality: str,
        forward: Callable[[list[Any]], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> Encoded:
        """``inputs`` in batches through ``forward`` (-> the ``modality`` embedding, joint, logits)."""
        parts: dict[str, list[np.ndarray]] = {"image": [], "text": [], "joint": [], "probs": []}
        for start in range(0, len(inputs), batch_size):
            embedding, joint, logits = forward(inputs[start : start + batch_size])
            parts[modality].append(embedding)
            parts["joint"].append(joint)
            parts["probs"].append((1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32))
        return self._encoded(parts)

    def _encoded(self, parts: dict[str, list[np.ndarray]]) -> Encoded:
        probs = np.concatenate(parts["probs"])
        return Encoded(
            image=np.concatenate(parts["image"]) if parts["image"] else None,
            text=np.concatenate(parts["text"]) if parts["text"] else None,
            joint=np.concatenate(parts["joint"]),
            probs=probs,
            predicted=self.predict(probs),
            labels=self.labels,
        )


def _is_fusion_model(source: object) -> bool:
    """``isinstance(source, FusionModel)`` without importing torch for a source that is not one."""
    import sys

    fusion = sys.modules.get("cxrsearch.model.fusion")
    return fusion is not None and isinstance(source, fusion.FusionModel)
