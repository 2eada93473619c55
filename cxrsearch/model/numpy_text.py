"""Text queries without torch: the text half of a checkpoint's FusionModel, evaluated in numpy.

A text query needs the text embedding and the label head's probabilities for the text alone (the
query-mode table, :mod:`cxrsearch.search.modes`). Importing torch and transformers' model code costs
2-4 s per process, while the forward pass of one short query costs milliseconds; this module runs
that forward pass with numpy on the checkpoint's own weights (``safetensors``, only the tensors it
needs) and the checkpoint's own tokenizer (``tokenizer/tokenizer.json`` with ``tokenizers``), so a
``cxrsearch search --text`` process never imports torch, transformers, timm or torchvision.

torch stays the reference: the same weights, the same operations in the same order (BERT encoder,
pooling, projections, cross-modal layers with the learned null image, fused norm, heads);
``tests/search/test_fast_path.py`` holds the two paths to cosine >= 0.9999 on real reports and to the
same hits. Architectures this module does not implement (:func:`supported` says why) are served by
torch. Dropout is off (eval mode), as in every query.

    model = NumpyTextModel.load(info)              # info: CheckpointInfo, weights already verified
    text_embedding, joint_embedding, logits = model.forward(["enlarged heart"])   # numpy [B, .]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint_info import CheckpointInfo

TOKENIZER_JSON = "tokenizer.json"
_BACKBONE = "text_tower.backbone."
_SKIPPED = ("image_tower.", "image_embed_proj.", "image_token_proj.", "null_text")


def supported(info: CheckpointInfo) -> str | None:
    """``None`` when this module can run ``info``'s text side, else why not (torch serves it)."""
    hf = info.text_tower_config
    if hf.get("model_type") != "bert":
        return f"text tower model_type {hf.get('model_type')!r} (implemented: bert)"
    if hf.get("position_embedding_type", "absolute") != "absolute" or hf.get("is_decoder"):
        return "text tower uses relative positions or is a decoder"
    if hf.get("hidden_act") != "gelu":
        return f"text tower activation {hf.get('hidden_act')!r} (implemented: gelu)"
    if info.config.text.pooling not in ("mean", "cls"):
        return f"text pooling {info.config.text.pooling!r}"
    if not (info.path / "tokenizer" / TOKENIZER_JSON).is_file():
        return f"the checkpoint tokenizer has no {TOKENIZER_JSON}"
    return None


# ---------------------------------------------------------------- operations (float32, eval mode)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 (Abramowitz & Stegun 7.1.26 is 1.5e-7; this is Numerical Recipes' erfc, 1.2e-7)."""
    z = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))
                    )
                )
            )
        )
    )
    erfc = t * np.exp(poly)
    return (np.sign(x) * (1.0 - erfc)).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / np.sqrt(2.0))))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(eps)) * weight + bias


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    out = x @ weight.T
    return out + bias if bias is not None else out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, key_keep: np.ndarray | None) -> np.ndarray:
    """Scaled dot-product attention of ``[B, Lq, C]`` queries on ``[B, Lk, C]`` keys/values, ``heads``
    heads; ``key_keep`` ``[B, Lk]`` bool masks padding keys out."""
    batch, lq, width = q.shape
    lk, dh = k.shape[1], width // heads
    q = q.reshape(batch, lq, heads, dh).transpose(0, 2, 1, 3)
    k = k.reshape(batch, lk, heads, dh).transpose(0, 2, 1, 3)
    v = v.reshape(batch, lk, heads, dh).transpose(0, 2, 1, 3)
    scores = (q @ k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(dh))
    if key_keep is not None:
        scores = np.where(key_keep[:, None, None, :], scores, np.float32(np.finfo(np.float32).min))
    return (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, lq, width)


def _masked_mean(tokens: np.ndarray, keep: np.ndarray) -> np.ndarray:
    weights = keep.astype(tokens.dtype)[..., None]
    return (tokens * weights).sum(1) / np.maximum(weights.sum(1), 1.0)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(1e-12))


# ---------------------------------------------------------------- the model


MAX_HEADER_BYTES = 100 << 20
"""The safetensors format's own limit on its JSON header."""


def _mapped_tensors(path: Path) -> dict[str, np.ndarray]:
    """The text side's tensors of a safetensors file as read-only views of the memory-mapped file.

    No copy: a query touches the pages it multiplies (the page cache keeps them between queries),
    where reading every tensor cost 50-80 ms per process for the 90 MB text side of the demo
    checkpoint. The file's sha256 was checked (or its stamp trusted) by the loader before this; the
    header is still checked as the format requires (size, every tensor inside the data and of the
    size its shape says)."""

    def bad(why: str) -> ModelError:
        return ModelError(f"cannot load checkpoint weights: {why}", path=path)

    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise bad(f"a safetensors header of {size} bytes")
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise bad("the safetensors header is not a JSON object")
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        start, out = 8 + size, {}
        for key, meta in header.items():
            if key == "__metadata__" or key.startswith(_SKIPPED):
                continue
            if meta["dtype"] != "F32":
                raise ModelError("text queries without torch need float32 weights", path=path)
            begin, end = (start + int(offset) for offset in meta["data_offsets"])
            shape = tuple(int(n) for n in meta["shape"])
            if not start <= begin <= end <= mapped.size or end - begin != 4 * math.prod(shape):
                raise bad(f"tensor {key} lies outside the data or disagrees with its shape {list(shape)}")
            out[key] = mapped[begin:end].view(np.float32).reshape(shape)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise bad(" ".join(str(exc).split())[:300]) from None
    return out


class NumpyTextModel:
    """The text side of a FusionModel in numpy. ``towers`` is ``("text",)``; ``labels``/``config`` as
    the checkpoint's. Build with :meth:`load`."""

    towers = ("text",)

    def __init__(self, info: CheckpointInfo, weights: dict[str, np.ndarray], tokenizer: Any) -> None:
        self.config = info.config
        self.labels = info.labels
        self.tokenizer = tokenizer
        self._w = weights
        hf = info.text_tower_config
        self._eps = float(hf.get("layer_norm_eps", 1e-12))
        self._heads = int(hf["num_attention_heads"])
        self._layers = int(hf["num_hidden_layers"])
        self._pad_id = int(hf.get("pad_token_id") or 0)
        fusion = info.config.fusion
        self._fusion_heads, self._fusion_layers, self._hybrid = fusion.num_heads, fusion.num_layers, fusion.hybrid_ffn

    @classmethod
    def load(cls, info: CheckpointInfo) -> NumpyTextModel:
        """Map the tensors a text query needs from ``model.safetensors`` and read the tokenizer."""
        reason = supported(info)
        if reason is not None:
            raise ModelError(
                f"text queries without torch are not implemented for this checkpoint: {reason}", path=info.path
            )
        weights_path = info.path / "model.safetensors"
        weights = _mapped_tensors(weights_path)
        tokenizer = _tokenizer(info.path / "tokenizer", info.config.preprocess.max_text_tokens)
        model = cls(info, weights, tokenizer)
        missing = [key for key in model._needed() if key not in weights]
        if missing:
            raise ModelError(f"cannot load checkpoint weights: missing {missing[:3]}", path=weights_path)
        return model

    def _needed(self) -> list[str]:
        keys = [
            f"{_BACKBONE}embeddings.{name}"
            for name in (
                "word_embeddings.weight",
                "position_embeddings.weight",
                "token_type_embeddings.weight",
                "LayerNorm.weight",
            )
        ]
        keys += [f"{_BACKBONE}encoder.layer.{i}.output.LayerNorm.bias" for i in range(self._layers)]
        keys += [f"layers.{i}.norm_image.weight" for i in range(self._fusion_layers)]
        return keys + [
            "null_image",
            "text_embed_proj.weight",
            "fused_norm.weight",
            "joint_proj.weight",
            "label_head.weight",
        ]

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` ``[B, T]`` int64, padded to the longest, truncated to the
        checkpoint's ``max_text_tokens`` (what the torch path's tokenizer call gives)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(text_embedding [B, D], joint_embedding [B, D], logits [B, L])`` for texts without an image.

        BLAS runs on one thread: a query's matrices are small, and BLAS worker threads spinning
        beside the store's own threads cost a busy machine up to a second (measured)."""
        with _one_blas_thread():
            return self._forward(texts)

    def _forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, mask = self.tokenize(texts)
        keep = mask.astype(bool)
        states = self._bert(ids, keep)
        w = self._w
        pooled = states[:, 0] if self.config.text.pooling == "cls" else _masked_mean(states, keep)
        raw = _linear(pooled, w["text_embed_proj.weight"], w["text_embed_proj.bias"])
        text = _layer_norm(
            _linear(states, w["text_token_proj.0.weight"], w["text_token_proj.0.bias"]),
            w["text_token_proj.1.weight"],
            w["text_token_proj.1.bias"],
            1e-5,
        )
        image = np.broadcast_to(w["null_image"], (len(ids), 1, w["null_image"].shape[-1])).copy()
        for i in range(self._fusion_layers):
            text, image = self._cross_layer(f"layers.{i}.", text, image, keep)
        fused = _layer_norm(
            np.concatenate([_masked_mean(text, keep), image.mean(1)], -1),
            w["fused_norm.weight"],
            w["fused_norm.bias"],
            1e-5,
        )
        joint = _linear(fused, w["joint_proj.weight"], w["joint_proj.bias"]) + raw
        logits = _linear(fused, w["label_head.weight"], w["label_head.bias"])
        return _normalize(raw), _normalize(joint), logits

    def _bert(self, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """The BERT encoder's last hidden states ``[B, T, Ct]`` (absolute positions, token type 0)."""
        w, p, eps = self._w, _BACKBONE, self._eps
        x = (
            w[p + "embeddings.word_embeddings.weight"][ids]
            + w[p + "embeddings.position_embeddings.weight"][: ids.shape[1]]
            + w[p + "embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w[p + "embeddings.LayerNorm.weight"], w[p + "embeddings.LayerNorm.bias"], eps)
        for i in range(self._layers):
            layer = f"{p}encoder.layer.{i}."

            def lin(name: str, h: np.ndarray) -> np.ndarray:
                return _linear(h, w[f"{layer}{name}.weight"], w[f"{layer}{name}.bias"])  # noqa: B023  (called within this iteration)

            context = _attention(
                lin("attention.self.query", x),
                lin("attention.self.key", x),
                lin("attention.self.value", x),
                self._heads,
                keep,
            )
            x = _layer_norm(
                x + lin("attention.output.dense", context),
                w[layer + "attention.output.LayerNorm.weight"],
                w[layer + "attention.output.LayerNorm.bias"],
                eps,
            )
            hidden = lin("output.dense", _gelu(lin("intermediate.dense", x)))
            x = _layer_norm(x + hidden, w[layer + "output.LayerNorm.weight"], w[layer + "output.LayerNorm.bias"], eps)
        return x

    def _mha(self, name: str, query: np.ndarray, key: np.ndarray, key_keep: np.ndarray | None) -> np.ndarray:
        """``nn.MultiheadAttention(query, key, key)`` (batch first, packed in-projection)."""
        w = self._w
        wq, wk, wv = np.split(w[name + "in_proj_weight"], 3)
        bq, bk, bv = np.split(w[name + "in_proj_bias"], 3)
        out = _attention(
            _linear(query, wq, bq), _linear(key, wk, bk), _linear(key, wv, bv), self._fusion_heads, key_keep
        )
        return _linear(out, w[name + "out_proj.weight"], w[name + "out_proj.bias"])

    def _cross_layer(
        self, p: str, text: np.ndarray, image: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One :class:`~cxrsearch.model.fusion.CrossModalLayer` (both directions read the previous states)."""
        w = self._w

        def norm(name: str, x: np.ndarray) -> np.ndarray:
            return _layer_norm(x, w[f"{p}{name}.weight"], w[f"{p}{name}.bias"], 1e-5)

        def ffn(name: str, x: np.ndarray) -> np.ndarray:
            hidden = _gelu(_linear(x, w[f"{p}{name}.0.weight"], w[f"{p}{name}.0.bias"]))
            return _linear(hidden, w[f"{p}{name}.3.weight"], w[f"{p}{name}.3.bias"])

        attended_text = self._mha(p + "text_to_image.", text, image, None)
        attended_image = self._mha(p + "image_to_text.", image, text, keep)
        text, image = norm("norm_text", text + attended_text), norm("norm_image", image + attended_image)
        if self._hybrid:
            image_summary = np.broadcast_to(
                image.mean(1, keepdims=True), (image.shape[0], text.shape[1], image.shape[2])
            )
            text_summary = np.broadcast_to(_masked_mean(text, keep)[:, None], image.shape)
            text = norm("norm_text_ffn", text + ffn("ffn_text", np.concatenate([text, image_summary], -1)))
            image = norm("norm_image_ffn", image + ffn("ffn_image", np.concatenate([image, text_summary], -1)))
        return text, image


def _one_blas_thread() -> Any:
    """``threadpoolctl.threadpool_limits(1, "blas")`` where threadpoolctl is installed, else nothing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - an optional speed-up
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _tokenizer(directory: Path, max_tokens: int) -> Any:
    """The checkpoint's fast tokenizer, truncating like the torch path (special tokens included)."""
    from tokenizers import Tokenizer

    path = directory / TOKENIZER_JSON
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a plain Exception for bad files
        raise ModelError(
            f"cannot load the checkpoint tokenizer: {' '.join(str(exc).split())[:200]}", path=path
        ) from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer
