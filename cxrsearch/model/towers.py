"""The two encoder towers: a timm image backbone and a transformers text backbone.

``ImageTower(pixel_values [B, 1, S, S] in [0, 1]) -> ImageFeatures`` (patch tokens + pooled) and
``TextTower(input_ids, attention_mask) -> TextFeatures`` (token states + mask + pooled). Each tower
is built from a :class:`~cxrsearch.model.config.TowerConfig` whose ``source`` says where weights
come from (``hub``, ``local-dir:``, ``python-package:``, ``random``; see ``config.py``). Weight files
are read as safetensors only: a directory holding only pickled ``*.bin`` weights is refused.

Grey radiographs: the model input is one grey channel; the image tower replicates it to the
backbone's ``in_chans`` (3 for ImageNet weights, so the pretrained patch embedding is used exactly
as trained) and applies the configured mean/std. Replication costs nothing measurable (only the
first convolution sees 3 channels) and keeps pretrained weights unmodified.

Public API::

    build_image_tower(config, pretrained=True) -> ImageTower     # pretrained=False: architecture only
    build_text_tower(config) -> TextTower
    text_tower_from_parts(hf_config: dict, tokenizer_dir, pooling) -> TextTower   # checkpoint loading
    ImageTower.forward(pixel_values) -> ImageFeatures; .out_dim
    TextTower.forward(input_ids, attention_mask) -> TextFeatures; .out_dim; .tokenizer;
        .input_embeddings (the word-embedding module, for LayerIntegratedGradients); .hf_config_dict()
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from cxrsearch.errors import ModelError
from cxrsearch.model.hub import resolve_weights_dir, snapshot_commit
from cxrsearch.model.output import ImageFeatures, TextFeatures

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.config import ModelConfig, PreprocessConfig, TowerConfig

VOCAB_DIR = Path(__file__).resolve().parent / "vocab"


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


class TextTower(nn.Module):
    """A transformers encoder seen as ``token ids -> (token states, mask, pooled vector)``."""

    weights_commit: str | None = None  # the Hub commit the weights were read from (hub sources), else None

    def __init__(self, backbone: nn.Module, tokenizer: Any, pooling: str) -> None:
        super().__init__()
        vocab_size = getattr(backbone.config, "vocab_size", None)
        if vocab_size is not None and len(tokenizer) > vocab_size:
            raise ModelError(
                f"the tokenizer has {len(tokenizer)} tokens but the text encoder only {vocab_size} embeddings"
            )
        self.backbone: Any = backbone  # a transformers model: its attributes (config, ...) are dynamic
        self.tokenizer = tokenizer  # a plain attribute: not a module, not in the state dict
        self.pooling = pooling

    @property
    def out_dim(self) -> int:
        """``Ct``, the hidden size."""
        return int(self.backbone.config.hidden_size)

    @property
    def input_embeddings(self) -> nn.Module:
        """The word-embedding layer (what LayerIntegratedGradients attributes to)."""
        return self.backbone.get_input_embeddings()

    def hf_config_dict(self) -> dict[str, Any]:
        """The backbone's transformers config, enough to rebuild the architecture offline."""
        return self.backbone.config.to_dict()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """``input_ids`` / ``attention_mask``: ``[B, T]`` (1 = real token, 0 = padding)."""
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ModelError(
                f"text tower expects input_ids and attention_mask [B, T], got {list(input_ids.shape)} and {list(attention_mask.shape)}"
            )
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = attention_mask.to(states.dtype).unsqueeze(-1)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return TextFeatures(tokens=states, mask=attention_mask, pooled=pooled)


# ---------------------------------------------------------------- image tower construction


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
            f"image encoder weights: expected one .safetensors file, found {found}; point --image-encoder at a timm model directory or .safetensors file",
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


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Library code prints nothing: no "unused weights" warnings, no progress bars."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def builtin_tokenizer(name: str) -> Any:
    """The WordPiece tokenizer of a vocabulary shipped in ``cxrsearch/model/vocab/<name>.txt``."""
    from transformers import BertTokenizer

    path = VOCAB_DIR / f"{name}.txt"
    if not path.is_file():
        raise ModelError(f"no builtin vocabulary {name!r}", path=path)
    vocab = {line.rstrip("\n"): i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())}
    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    else:  # transformers 4.x
        tokenizer = BertTokenizer(vocab_file=str(path), do_lower_case=True)
    if len(tokenizer) != len(vocab) or tokenizer.cls_token_id != vocab["[CLS]"]:
        raise ModelError(
            f"the tokenizer did not load vocabulary {name!r} ({len(tokenizer)} of {len(vocab)} entries)", path=path
        )
    return tokenizer


def _pooler_free(model_type: str) -> dict[str, Any]:
    return {"add_pooling_layer": False} if model_type in ("bert", "roberta", "xlm-roberta", "electra") else {}


def build_text_tower(config: ModelConfig) -> TextTower:
    """The text tower of ``config``, weights and tokenizer from its source (or random)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tower = config.text
    commit = None
    with _quiet_transformers():
        if tower.source_kind == "random":
            if not tower.kwargs or "model_type" not in tower.kwargs or not tower.tokenizer:
                raise ModelError(
                    f"model {config.name!r}: a random text tower needs 'kwargs' with model_type and a 'tokenizer'"
                )
            kwargs = dict(tower.kwargs)
            hf_config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
            backbone = AutoModel.from_config(hf_config, **_pooler_free(hf_config.model_type))
            tokenizer = _tokenizer_for(tower, None)
        else:
            weights_dir = resolve_weights_dir(
                tower,
                "text encoder",
                "a save_pretrained directory: config.json, *.safetensors, tokenizer files",
                "--text-encoder",
            )
            commit = snapshot_commit(weights_dir) if tower.source_kind == "hub" else None
            if not (weights_dir / "config.json").is_file() or not any(weights_dir.glob("*.safetensors")):
                raise ModelError(
                    "text encoder weights not found (expected a save_pretrained directory with config.json and "
                    "*.safetensors); point --text-encoder at a local copy",
                    path=weights_dir,
                )
            try:
                model_type = AutoConfig.from_pretrained(weights_dir, local_files_only=True).model_type
                backbone = AutoModel.from_pretrained(
                    weights_dir, local_files_only=True, use_safetensors=True, **_pooler_free(model_type)
                )
                tokenizer = _tokenizer_for(tower, weights_dir, AutoTokenizer)
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"cannot load text encoder: {' '.join(str(exc).split())[:300]}", path=weights_dir
                ) from None
    text_tower = TextTower(backbone, tokenizer, tower.pooling)
    text_tower.weights_commit = commit
    return text_tower


def _tokenizer_for(tower: TowerConfig, weights_dir: Path | None, auto: Any = None) -> Any:
    if tower.tokenizer:
        kind, _, name = tower.tokenizer.partition(":")
        if kind != "builtin" or not name:
            raise ModelError(f"unknown tokenizer source {tower.tokenizer!r} (use builtin:NAME or leave it unset)")
        return builtin_tokenizer(name)
    return auto.from_pretrained(weights_dir, local_files_only=True)


def text_tower_from_parts(hf_config: dict[str, Any], tokenizer_dir: Path, pooling: str) -> TextTower:
    """Rebuild a text tower's architecture (random weights) + tokenizer from checkpoint files."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    values = dict(hf_config)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ModelError("checkpoint text tower config has no model_type", path=tokenizer_dir.parent / "config.json")
    with _quiet_transformers():
        for key in ("transformers_version", "architectures", "_name_or_path"):
            values.pop(key, None)
        backbone = AutoModel.from_config(AutoConfig.for_model(model_type, **values), **_pooler_free(model_type))
        try:
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load the checkpoint tokenizer: {' '.join(str(exc).split())[:200]}", path=tokenizer_dir
            ) from None
    return TextTower(backbone, tokenizer, pooling)
