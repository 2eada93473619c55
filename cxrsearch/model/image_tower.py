"""The image tower: a timm backbone over grey radiographs.

``ImageTower(pixel_values [B, 1, S, S] in [0, 1]) -> ImageFeatures`` (patch tokens + pooled), built
from a :class:`~cxrsearch.model.config.TowerConfig` whose ``source`` says where weights come from
(``hub``, ``local-dir:``, ``python-package:``, ``random``; :mod:`cxrsearch.model.hub`). Weight files
are read as safetensors only: a directory holding only pickled ``*.bin`` weights is refused.

Grey radiographs: the model input is one grey channel; the tower replicates it to the backbone's
``in_chans`` (3 for ImageNet weights, so the pretrained patch embedding is used exactly as trained)
and applies the configured mean/std. Replication costs nothing measurable (only the first
convolution sees 3 channels) and keeps pretrained weights unmodified.

Public API::

    build_image_tower(config, pretrained=True) -> ImageTower     # pretrained=False: architecture only
    ImageTower.forward(pixel_values) -> ImageFeatures; .out_dim
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from cxrsearch.errors import ModelError
from cxrsearch.model.hub import resolve_weights_dir, snapshot_commit
from cxrsearch.model.output import ImageFeatures

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.config import ModelConfig, PreprocessConfig, TowerConfig


class ImageTower(nn.Module):
    """A timm backbone seen as ``grey pixels -> (patch tokens, pooled vector)``."""

    weights_commit: str | None = None  # the Hub commit the weights were read from (hub sources), else None
    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self, backbone: nn.Module, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.backbone: Any = backbone  # a timm model: its attributes (num_features, forward_features, ...) are dynamic
        self.image_size = preprocess.image_size
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, -1, 1, 1), persistent=False)

    @property
    def out_dim(self) -> int:
        """``Ci``, the width of patch tokens and of the pooled vector."""
        return int(self.backbone.num_features)

    def forward(self, pixel_values: torch.Tensor) -> ImageFeatures:
        """``pixel_values``: ``[B, 1, S, S]`` grey in ``[0, 1]`` (see ``cxrsearch.image.preprocess``)."""
        from cxrsearch.image.preprocess import normalize

        size = self.image_size
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 1 or tuple(pixel_values.shape[2:]) != (size, size):
            raise ModelError(f"image tower expects grey pixels [B, 1, {size}, {size}], got {list(pixel_values.shape)}")
        features = self.backbone.forward_features(normalize(pixel_values, self.mean, self.std))
        pooled = self.backbone.forward_head(features, pre_logits=True)
        if features.ndim == 4:  # a feature map: swin in timm 1.x is NHWC, convnets NCHW
            if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":
                batch, rows, cols, width = features.shape
                tokens = features.reshape(batch, rows * cols, width)
            else:
                batch, width, rows, cols = features.shape
                tokens = features.flatten(2).transpose(1, 2)
        elif features.ndim == 3:  # a ViT-style token sequence: drop class/register tokens
            tokens = features[:, int(getattr(self.backbone, "num_prefix_tokens", 0)) :]
            rows, cols = (int(v) for v in self.backbone.patch_embed.grid_size)
        else:
            raise ModelError(f"unsupported timm feature layout {list(features.shape)}")
        if tokens.shape[1] != rows * cols:
            raise ModelError(f"patch tokens ({tokens.shape[1]}) do not fill the {rows}x{cols} grid")
        return ImageFeatures(tokens=tokens, pooled=pooled, grid=(int(rows), int(cols)))


def _timm_kwargs(tower: TowerConfig, preprocess: PreprocessConfig) -> dict[str, Any]:
    import timm

    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in tower.kwargs.items()}
    kwargs.update(num_classes=0, in_chans=preprocess.channels)
    pretrained_cfg = timm.models.get_pretrained_cfg(cast(str, tower.arch))
    default_size = tuple(pretrained_cfg.input_size[1:]) if pretrained_cfg is not None else None
    # Only fixed-input-size architectures (ViT, Swin: position tables sized at build) take img_size;
    # convnets (ResNet, ConvNeXt) accept any size and refuse the keyword.
    fixed = pretrained_cfg is None or bool(getattr(pretrained_cfg, "fixed_input_size", True))
    size = kwargs.get("img_size")
    if size is None and fixed and default_size is not None and default_size != (preprocess.image_size,) * 2:
        kwargs["img_size"] = preprocess.image_size
    elif (
        size is not None
        and tuple(size if isinstance(size, (tuple, list)) else (size, size)) != (preprocess.image_size,) * 2
    ):
        raise ModelError(f"image tower img_size {size} differs from preprocess image_size {preprocess.image_size}")
    return kwargs


def build_image_tower(config: ModelConfig, pretrained: bool = True) -> ImageTower:
    """The image tower of ``config``; weights from its source unless ``pretrained`` is False."""
    import timm

    tower = config.image
    if not timm.is_model(cast(str, tower.arch)):
        raise ModelError(f"unknown timm architecture {tower.arch!r}")
    weights = None
    if pretrained and tower.source_kind != "random":  # find the weights before building anything
        weights = resolve_weights_dir(
            tower,
            "image encoder",
            "a timm model directory with model.safetensors, or a .safetensors file",
            "--image-encoder",
        )
    backbone = timm.create_model(cast(str, tower.arch), pretrained=False, **_timm_kwargs(tower, config.preprocess))
    if weights is not None:
        _load_timm_weights(backbone, weights, tower)
    image_tower = ImageTower(backbone, config.preprocess)
    image_tower.weights_commit = (
        snapshot_commit(weights) if weights is not None and tower.source_kind == "hub" else None
    )
    return image_tower


def _load_timm_weights(backbone: nn.Module, location: Path, tower: TowerConfig) -> None:
    from safetensors.torch import load_file

    if location.is_file():
        files = [location] if location.suffix == ".safetensors" else []
    else:
        preferred = location / "model.safetensors"
        files = [preferred] if preferred.is_file() else sorted(location.glob("*.safetensors"))
    if len(files) != 1:
        pickled = location.is_dir() and any(location.glob("*.bin")) or location.suffix in (".bin", ".pth", ".pt")
        found = "only pickled weights (convert them to safetensors)" if pickled else f"{len(files)} .safetensors files"
        raise ModelError(
            f"image encoder weights: expected one .safetensors file, found {found}; "
            "point --image-encoder at a timm model directory or .safetensors file",
            path=location,
        )
    try:
        state = load_file(str(files[0]))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ModelError(f"cannot read image encoder weights: {exc}", path=files[0]) from None
    pretrained_cfg = cast(dict[str, Any], backbone.pretrained_cfg)  # set by timm on every model
    classifier = pretrained_cfg.get("classifier") or "head.fc"
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    first_conv = pretrained_cfg.get("first_conv")
    key = f"{first_conv}.weight" if first_conv else None
    if key in state and state[key].shape[1] != backbone.state_dict()[key].shape[1]:
        from timm.models import adapt_input_conv

        state[key] = adapt_input_conv(backbone.state_dict()[key].shape[1], state[key])
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"image encoder weights do not fit {tower.arch}: {first}", path=files[0]) from None


# ---------------------------------------------------------------- text tower construction
