"""The fusion model: two towers, a shared joint space, cross-attention fusion and a label head.

Data flow (``D`` = ``config.fusion.joint_dim``)::

    pixels [B,1,S,S] -> ImageTower -> patch tokens [B,P,Ci], pooled [B,Ci]
    ids, mask [B,T]  -> TextTower  -> token states [B,T,Ct], pooled [B,Ct]

    pooled  -> Linear -> L2 norm          = image_embedding / text_embedding   (contrastive space)
    tokens  -> Linear + LayerNorm -> N x CrossModalLayer (text <-> image) -> masked means
            -> [mean_text ; mean_image] = fused [B, 2D]
    fused   -> label head                  = logits [B, L]
    fused   -> Linear, + mean of the present modality projections -> L2 norm = joint_embedding

An absent modality is replaced by a learned null token (one key that is never padding), so an
image-only or text-only input still runs every layer and yields a joint embedding and logits. The
joint embedding is a residual on top of the present single-modality projections: image-only,
text-only and paired joint vectors start in the contrastive space and the fusion learns a correction
(the training loss also aligns them). Training should sometimes drop a modality so that
single-modality outputs are trained too.

Padding never takes part: text padding is masked out as attention keys (``key_padding_mask``) and
of every mean; appending padding leaves every output unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from cxrsearch.errors import ModelError
from cxrsearch.model.config import FusionConfig, ModelConfig
from cxrsearch.model.image_tower import ImageTower
from cxrsearch.model.output import ImageFeatures, ModelOutput, TextFeatures
from cxrsearch.model.text_tower import TextTower


def masked_mean(tokens: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of ``[B, N, D]`` tokens, counting only ``keep`` (``[B, N]`` bool) positions."""
    if keep is None:
        return tokens.mean(1)
    weights = keep.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class CrossModalLayer(nn.Module):
    """Bidirectional cross-attention (post-LN residuals) with an optional hybrid FFN.

    Both directions read the *previous* layer's states: text queries attend to image keys and image
    queries attend to text keys; ``LayerNorm(x + attention)``. With ``hybrid_ffn`` each stream then
    gets ``LayerNorm(x + FFN([x ; masked mean of the other stream]))``.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        dim, heads, drop = config.joint_dim, config.num_heads, config.dropout
        self.text_to_image = nn.MultiheadAttention(dim, heads, dropout=drop, batch_first=True)
        self.image_to_text = nn.MultiheadAttention(dim, heads, dropout=drop, batch_first=True)
        self.norm_text = nn.LayerNorm(dim)
        self.norm_image = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(drop)
        self.hybrid = config.hybrid_ffn
        if self.hybrid:
            hidden = config.ffn_mult * dim
            self.ffn_text = nn.Sequential(
                nn.Linear(2 * dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim)
            )
            self.ffn_image = nn.Sequential(
                nn.Linear(2 * dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim)
            )
            self.norm_text_ffn = nn.LayerNorm(dim)
            self.norm_image_ffn = nn.LayerNorm(dim)

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, text_keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``text [B,T,D]``, ``image [B,P,D]``, ``text_keep [B,T]`` bool -> (text, image, attn_t2i, attn_i2t)."""
        attended_text, t2i = self.text_to_image(text, image, image, need_weights=True, average_attn_weights=False)
        attended_image, i2t = self.image_to_text(
            image, text, text, key_padding_mask=~text_keep, need_weights=True, average_attn_weights=False
        )
        text = self.norm_text(text + self.dropout(attended_text))
        image = self.norm_image(image + self.dropout(attended_image))
        if self.hybrid:
            image_summary = image.mean(1, keepdim=True).expand(-1, text.shape[1], -1)
            text_summary = masked_mean(text, text_keep).unsqueeze(1).expand(-1, image.shape[1], -1)
            text = self.norm_text_ffn(text + self.dropout(self.ffn_text(torch.cat([text, image_summary], -1))))
            image = self.norm_image_ffn(image + self.dropout(self.ffn_image(torch.cat([image, text_summary], -1))))
        return text, image, t2i, i2t


class FusionModel(nn.Module):
    """Image tower + text tower + projections + cross-modal fusion + label head.

    Build with :func:`cxrsearch.model.build.create_model` (or load with
    :func:`cxrsearch.model.checkpoint.load_checkpoint`). Attributes: ``config`` (ModelConfig),
    ``labels`` (tuple of label names, the head order), ``image_tower``, ``text_tower`` (which holds
    the ``tokenizer``).

    Call ``model(pixel_values=..., input_ids=..., attention_mask=...)`` with either modality absent,
    or ``model(image_features=..., text_features=...)`` with cached tower outputs (frozen-encoder
    training); both return :class:`~cxrsearch.model.output.ModelOutput`.

    A query needs one tower only: either tower may be ``None`` (then its width ``image_dim`` /
    ``text_dim`` must be given, so that projections, fusion and heads are built as usual). Such a
    model runs every other part unchanged and refuses inputs of the missing modality.
    """

    def __init__(
        self,
        config: ModelConfig,
        labels: Sequence[str],
        image_tower: ImageTower | None,
        text_tower: TextTower | None,
        *,
        image_dim: int | None = None,
        text_dim: int | None = None,
    ) -> None:
        super().__init__()
        labels = tuple(str(label) for label in labels)
        if not labels or len(set(labels)) != len(labels):
            raise ModelError(f"model {config.name!r} needs a non-empty list of distinct labels, got {list(labels)}")
        if image_tower is None and text_tower is None:
            raise ModelError(f"model {config.name!r} needs at least one tower")
        self.config = config
        self.labels = labels
        self.image_tower = image_tower
        self.text_tower = text_tower
        self._towers_frozen = False
        image_dim = image_tower.out_dim if image_tower is not None else image_dim
        text_dim = text_tower.out_dim if text_tower is not None else text_dim
        if image_dim is None or text_dim is None:
            raise ModelError("a model built without a tower needs that tower's width (image_dim / text_dim)")
        dim = config.fusion.joint_dim
        self.image_embed_proj = nn.Linear(image_dim, dim)
        self.text_embed_proj = nn.Linear(text_dim, dim)
        self.image_token_proj = nn.Sequential(nn.Linear(image_dim, dim), nn.LayerNorm(dim))
        self.text_token_proj = nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim))
        self.null_image = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.null_text = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList(CrossModalLayer(config.fusion) for _ in range(config.fusion.num_layers))
        self.fused_norm = nn.LayerNorm(2 * dim)
        self.joint_proj = nn.Linear(2 * dim, dim)
        self.label_head = nn.Linear(2 * dim, len(labels))

    # ------------------------------------------------------------------ parameters and modes

    @property
    def joint_dim(self) -> int:
        """``D``, the size of every embedding."""
        return self.config.fusion.joint_dim

    @property
    def towers(self) -> tuple[str, ...]:
        """The towers this model holds: ``("image", "text")``, or one of them (a query-side load)."""
        return tuple(
            name for name, tower in (("image", self.image_tower), ("text", self.text_tower)) if tower is not None
        )

    @property
    def tokenizer(self):
        """The text tower's tokenizer (transformers ``PreTrainedTokenizerBase``)."""
        return self._tower("text").tokenizer

    def _tower(self, name: str) -> nn.Module:
        tower = self.image_tower if name == "image" else self.text_tower
        if tower is None:
            raise ModelError(
                f"this model was loaded without its {name} tower (load the checkpoint with towers including {name!r})"
            )
        return tower

    def tower_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the towers (fine-tuned with a small learning rate, or frozen)."""
        for tower in (self.image_tower, self.text_tower):
            if tower is not None:
                yield from tower.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Everything else: projections, null tokens, fusion layers, joint and label heads."""
        towers = {id(p) for p in self.tower_parameters()}
        return (p for p in self.parameters() if id(p) not in towers)

    def freeze_towers(self, frozen: bool = True) -> FusionModel:
        """Stop (or restart) gradients into the towers; frozen towers stay in eval mode (no dropout)."""
        self._towers_frozen = frozen
        for parameter in self.tower_parameters():
            parameter.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> FusionModel:
        super().train(mode)
        if self._towers_frozen:
            for tower in (self.image_tower, self.text_tower):
                if tower is not None:
                    tower.eval()
        return self

    # ------------------------------------------------------------------ forward

    def encode_image(self, pixel_values: torch.Tensor) -> ImageFeatures:
        """Run the image tower only (what frozen-encoder training caches)."""
        return self._tower("image")(pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """Run the text tower only (what frozen-encoder training caches)."""
        return self._tower("text")(input_ids, attention_mask)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        image_features: ImageFeatures | None = None,
        text_features: TextFeatures | None = None,
    ) -> ModelOutput:
        """Towers (unless features are given) then :meth:`fuse`. At least one modality is required.

        ``pixel_values``: ``[B, 1, S, S]`` grey in ``[0, 1]``; ``input_ids`` / ``attention_mask``:
        ``[B, T]`` (mask defaults to all ones). Prepare them with :class:`cxrsearch.model.encode.Encoder`.
        """
        if pixel_values is not None:
            if image_features is not None:
                raise ModelError("give pixel_values or image_features, not both")
            image_features = self.encode_image(pixel_values)
        if input_ids is not None:
            if text_features is not None:
                raise ModelError("give input_ids or text_features, not both")
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            text_features = self.encode_text(input_ids, mask)
        return self.fuse(image_features, text_features)

    def fuse(self, image: ImageFeatures | None, text: TextFeatures | None) -> ModelOutput:
        """Projections, fusion layers and heads on tower outputs (either may be ``None``)."""
        if image is None and text is None:
            raise ModelError("the model needs an image, a text, or both")
        batch = (image.tokens if image is not None else cast(TextFeatures, text).tokens).shape[0]
        if image is not None and text is not None and text.tokens.shape[0] != batch:
            raise ModelError(
                f"{batch} images but {text.tokens.shape[0]} texts: paired inputs must have the same batch size"
            )

        image_embedding = text_embedding = None
        present: list[torch.Tensor] = []
        if image is not None:
            raw = self.image_embed_proj(image.pooled)
            present.append(raw)
            image_embedding = F.normalize(raw, dim=-1)
            image_tokens, grid = self.image_token_proj(image.tokens), image.grid
        else:
            image_tokens, grid = self.null_image.expand(batch, -1, -1), (1, 1)
        if text is not None:
            keep = text.mask.bool()
            if not bool(keep.any(1).all()):
                raise ModelError("a text has no real tokens (empty attention mask)")
            raw = self.text_embed_proj(text.pooled)
            present.append(raw)
            text_embedding = F.normalize(raw, dim=-1)
            text_tokens = self.text_token_proj(text.tokens)
        else:
            text_tokens = self.null_text.expand(batch, -1, -1)
            keep = torch.ones(batch, 1, dtype=torch.bool, device=text_tokens.device)

        t2i_maps, i2t_maps = [], []
        for layer in self.layers:
            text_tokens, image_tokens, t2i, i2t = layer(text_tokens, image_tokens, keep)
            t2i_maps.append(t2i)
            i2t_maps.append(i2t)

        fused = self.fused_norm(torch.cat([masked_mean(text_tokens, keep), image_tokens.mean(1)], -1))
        joint = self.joint_proj(fused) + torch.stack(present).mean(0)
        return ModelOutput(
            image_embedding=image_embedding,
            text_embedding=text_embedding,
            joint_embedding=F.normalize(joint, dim=-1),
            logits=self.label_head(fused),
            text_to_image_attn=tuple(t2i_maps),
            image_to_text_attn=tuple(i2t_maps),
            text_mask=keep,
            patch_grid=grid,
            has_image=image is not None,
            has_text=text is not None,
        )
