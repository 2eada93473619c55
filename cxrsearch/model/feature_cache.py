"""Frozen-tower feature cache: what makes ``--freeze-encoders`` training cheap.

With frozen towers, the image and text towers are pure functions of their inputs, so their outputs
(text token states + masks + pooled vectors, image patch tokens + pooled vectors) are computed
**once** and every epoch trains only projections, fusion layers and heads on them.

Tables live in memory for the run and on disk as safetensors under
``<cache dir>/features/`` (``cxrsearch.paths.cache_dir()``, i.e. ``$CXRSEARCH_CACHE`` or the
user cache dir), one file per table, named by a sha256 **key** over

- the tower's weights (every tensor of its state dict, so a random tower seeded differently, or a
  fine-tuned one, never reuses another's features),
- the preprocessing that shapes its inputs (tokenizer class, vocabulary size and
  ``max_text_tokens``; or the image ``PreprocessConfig``), the text pooling,
- the inputs themselves, in order (texts; or image paths with size and modification time).

A stale entry therefore cannot be hit; deleting the folder only costs recomputation. Text tokens are
stored ragged (real tokens only, float32: no precision lost against the live tower) with row
offsets, and re-padded per batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cxrsearch.errors import ModelError
from cxrsearch.model.output import ImageFeatures, TextFeatures
from cxrsearch.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.image_tower import ImageTower
    from cxrsearch.model.output import ImageFeatures, TextFeatures
    from cxrsearch.model.text_tower import TextTower


@dataclass(frozen=True)
class TextFeatureTable:
    """Text-tower outputs of ``N`` texts. ``tokens``: ``[sum T_i, Ct]`` real-token states, row ``i``
    owning ``tokens[offsets[i]:offsets[i + 1]]``; ``offsets``: ``[N + 1]`` int64; ``pooled``: ``[N, Ct]``."""

    tokens: torch.Tensor
    offsets: torch.Tensor
    pooled: torch.Tensor

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def select(self, rows: Sequence[int], device: str = "cpu") -> TextFeatures:
        """``TextFeatures`` of ``rows``, right-padded to the longest selected text."""
        import torch

        starts = [int(self.offsets[r]) for r in rows]
        lengths = [int(self.offsets[r + 1]) - s for r, s in zip(rows, starts)]
        width = max(lengths)
        tokens = self.tokens.new_zeros((len(rows), width, self.tokens.shape[1]))
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (start, length) in enumerate(zip(starts, lengths)):
            tokens[i, :length] = self.tokens[start : start + length]
            mask[i, :length] = 1
        pooled = self.pooled[list(rows)]
        return TextFeatures(tokens=tokens.to(device), mask=mask.to(device), pooled=pooled.to(device))


@dataclass(frozen=True)
class ImageFeatureTable:
    """Image-tower outputs of ``M`` images: ``tokens`` ``[M, P, Ci]``, ``pooled`` ``[M, Ci]``, ``grid``."""

    tokens: torch.Tensor
    pooled: torch.Tensor
    grid: tuple[int, int]

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def select(self, rows: Sequence[int], device: str = "cpu") -> ImageFeatures:

        index = list(rows)
        return ImageFeatures(tokens=self.tokens[index].to(device), pooled=self.pooled[index].to(device), grid=self.grid)


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) of a module's state dict."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _key(kind: str, parts: dict) -> str:
    return hashlib.sha256(
        json.dumps({"kind": kind, "version": 1, **parts}, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def _read(path: Path, names: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise ModelError(f"damaged feature cache file ({exc}); delete it to recompute", path=path) from None
    if set(tensors) != set(names):
        raise ModelError(
            f"feature cache file holds {sorted(tensors)}, expected {sorted(names)}; delete it to recompute", path=path
        )
    return tensors


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def text_features(
    model: FusionModel,
    texts: Sequence[str],
    cache_root: Path,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
) -> TextFeatureTable:
    """Frozen text-tower outputs of ``texts`` (from the cache file when its key matches); ``progress``
    gets ``ProgressEvent("text features", done, total)`` texts while they are computed."""
    import torch

    from cxrsearch.model.encode import Encoder

    tower, tokenizer = cast("TextTower", model.text_tower), model.tokenizer
    key = _key(
        "text",
        {
            "tower": module_fingerprint(tower),
            "pooling": tower.pooling,
            "tokenizer": type(tokenizer).__name__,
            "vocab": len(tokenizer),
            "max_tokens": model.config.preprocess.max_text_tokens,
            "texts": list(texts),
        },
    )
    path = Path(cache_root) / "features" / f"text-{key[:40]}.safetensors"
    cached = _read(path, ("tokens", "offsets", "pooled"))
    if cached is not None and int(cached["pooled"].shape[0]) == len(texts):
        return TextFeatureTable(cached["tokens"], cached["offsets"], cached["pooled"])
    encoder = Encoder(model, device=device)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
    states: list[torch.Tensor | None] = [None] * len(texts)
    pooled = torch.zeros((len(texts), tower.out_dim))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = encoder.tokenize([texts[i] for i in rows])
                out = model.encode_text(batch["input_ids"], batch["attention_mask"])
                keep = out.mask.bool().cpu()
                for j, i in enumerate(rows):
                    states[i] = out.tokens[j].float().cpu()[keep[j]]
                    pooled[i] = out.pooled[j].float().cpu()
                if progress is not None:
                    progress(ProgressEvent("text features", min(start + batch_size, len(order)), len(order)))
    finally:
        model.train(was_training)
    filled = cast(list[torch.Tensor], states)  # every row was set above
    lengths = torch.tensor([0] + [s.shape[0] for s in filled], dtype=torch.long)
    table = TextFeatureTable(torch.cat(filled), lengths.cumsum(0), pooled)
    _write(path, {"tokens": table.tokens, "offsets": table.offsets, "pooled": table.pooled})
    return table


def image_features(
    model: FusionModel,
    paths: Sequence[Path],
    cache_root: Path,
    *,
    device: str = "cpu",
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
) -> ImageFeatureTable:
    """Frozen image-tower outputs of the radiographs at ``paths`` (decoded with ``decode_image``);
    ``progress`` gets ``ProgressEvent("image features", done, total)`` radiographs while they are
    computed."""
    import torch

    from cxrsearch.image.decode import decode_image
    from cxrsearch.model.encode import Encoder

    files = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in map(Path, paths)]
    key = _key(
        "image",
        {
            "tower": module_fingerprint(cast("ImageTower", model.image_tower)),
            "preprocess": model.config.to_dict()["preprocess"],
            "files": files,
        },
    )
    path = Path(cache_root) / "features" / f"image-{key[:40]}.safetensors"
    cached = _read(path, ("tokens", "pooled", "grid"))
    if cached is not None and int(cached["pooled"].shape[0]) == len(paths):
        grid = tuple(int(v) for v in cached["grid"])
        return ImageFeatureTable(cached["tokens"], cached["pooled"], (grid[0], grid[1]))
    if not paths:
        raise ModelError("image_features needs at least one image")
    encoder = Encoder(model, device=device)
    tokens, pooled, grid = [], [], (0, 0)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                pixels, _ = encoder.prepare_images([decode_image(p) for p in paths[start : start + batch_size]])
                out = model.encode_image(pixels)
                tokens.append(out.tokens.float().cpu())
                pooled.append(out.pooled.float().cpu())
                grid = out.grid
                if progress is not None:
                    progress(ProgressEvent("image features", min(start + batch_size, len(paths)), len(paths)))
    finally:
        model.train(was_training)
    table = ImageFeatureTable(torch.cat(tokens), torch.cat(pooled), grid)
    _write(path, {"tokens": table.tokens, "pooled": table.pooled, "grid": torch.tensor(grid, dtype=torch.long)})
    return table
