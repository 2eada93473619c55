"""The text tower: a transformers backbone over report text, with its tokenizer.

``TextTower(input_ids, attention_mask) -> TextFeatures`` (token states + mask + pooled), built from a
:class:`~cxrsearch.model.config.TowerConfig` whose ``source`` says where weights come from (``hub``,
``local-dir:``, ``python-package:``, ``random``; :mod:`cxrsearch.model.hub`). Weight files are read
as safetensors only. A checkpoint rebuilds the tower offline from its saved transformers config and
tokenizer (:func:`text_tower_from_parts`).

Public API::

    build_text_tower(config) -> TextTower
    text_tower_from_parts(hf_config: dict, tokenizer_dir, pooling) -> TextTower   # checkpoint loading
    builtin_tokenizer(name) -> tokenizer                                        # vocab/ shipped here
    TextTower.forward(input_ids, attention_mask) -> TextFeatures; .out_dim; .tokenizer;
        .input_embeddings (the word-embedding module, for LayerIntegratedGradients); .hf_config_dict()
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cxrsearch.errors import ModelError
from cxrsearch.model.hub import resolve_weights_dir, snapshot_commit
from cxrsearch.model.output import TextFeatures

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.config import ModelConfig, TowerConfig

VOCAB_DIR = Path(__file__).resolve().parent / "vocab"


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
                "text tower expects input_ids and attention_mask [B, T], "
                f"got {list(input_ids.shape)} and {list(attention_mask.shape)}"
            )
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = attention_mask.to(states.dtype).unsqueeze(-1)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return TextFeatures(tokens=states, mask=attention_mask, pooled=pooled)


# ---------------------------------------------------------------- image tower construction


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
