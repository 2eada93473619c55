"""Image queries without torch: the image side of a checkpoint exported to ONNX, run by onnxruntime.

A ``cxrsearch search --image`` process needs the image embedding, the joint embedding (the image
fused with the learned null text) and the label head's logits for one film. Building them with torch
costs 4-7 s per process before any pixel is seen (importing torch 1.4-1.9 s, timm + torchvision
2.3 s, building the tower); onnxruntime imports in ~0.2 s and runs Swin-T on one 224 px film in
~0.25 s on 2 cores. Preprocessing is numpy (:mod:`cxrsearch.image.preprocess`), so such a process
never imports torch, timm or torchvision.

- **Export** (:func:`export`, through :func:`cxrsearch.model.checkpoint.export_image_side`: the end
  of ``cxrsearch train`` for a checkpoint that learned from radiographs, or ``cxrsearch models
  export-onnx CKPT``): ``pixel_values -> (image, joint, logits)`` with ``torch.onnx`` (TorchScript
  exporter, opset 17, dynamic batch; needs ``onnx``, ``pip install 'cxrsearch[onnx]'``), checked on
  onnxruntime against torch on two inputs (cosine >= 0.9999 for both embeddings, probabilities within
  1e-4) and kept only then. The file sits beside the checkpoint (``query-image.onnx`` +
  ``query-image.json``), or for a read-only checkpoint in ``<cache dir>/onnx/``; the record holds the
  checkpoint's weight fingerprint, the export format (:data:`EXPORT_FORMAT`, raised whenever the
  exported computation changes) and the image size.
- **Use** (:meth:`OnnxImageModel.load`): an image query loaded with ``runtime="auto"`` (what
  ``cxrsearch search`` uses) runs on onnxruntime when the record matches the checkpoint; a record
  for other weights or another export format is ignored (torch serves the query; export again). An
  export that matches but cannot be loaded (a damaged file, an onnxruntime too old for it) is an
  error naming the file and how to recover, not a silent switch to torch.

torch stays the reference: ``tests/search/test_fast_path.py`` holds this path to the torch
embeddings (cosine >= 0.9999) on real radiographs and to the same hits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrsearch.errors import ModelError
from cxrsearch.files import write_atomic
from cxrsearch.paths import cache_for

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.checkpoint_info import CheckpointInfo

ONNX_FILE = "query-image.onnx"
RECORD_FILE = "query-image.json"
OPSET = 17
EXPORT_FORMAT = 1
"""Version of what is exported (the image side's computation); a record of another one is ignored."""
OUTPUTS = ("image", "joint", "logits")
MIN_COSINE = 0.9999
MAX_PROB_DIFF = 1e-4


def runtime_missing() -> str | None:
    """``None`` when onnxruntime is installed, else what to install."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'cxrsearch[onnx]')"
    return None


def check_export_possible() -> None:
    """ModelError saying what to install unless an export can run here (onnx and onnxruntime)."""
    missing = runtime_missing()
    if importlib.util.find_spec("onnx") is None:
        missing = "onnx is not installed (pip install 'cxrsearch[onnx]')"
    if missing is not None:
        raise ModelError(f"cannot export the image side to ONNX: {missing}")


def locations(info: CheckpointInfo) -> tuple[Path, Path]:
    """Where the export lives: beside the checkpoint, else (read-only) ``<cache dir>/onnx/<key>/``."""
    return info.path, cache_for(info.path, "onnx")


def _record(directory: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def find_export(info: CheckpointInfo) -> Path | None:
    """The ONNX file exported from exactly these weights (fingerprint), or ``None``."""
    for directory in locations(info):
        record = _record(directory)
        if (
            record
            and record.get("fingerprint") == info.fingerprint
            and record.get("format") == EXPORT_FORMAT
            and record.get("image_size") == info.config.preprocess.image_size
            and (directory / ONNX_FILE).is_file()
        ):
            return directory / ONNX_FILE
    return None


class OnnxImageModel:
    """The image side of a FusionModel on onnxruntime. ``towers`` is ``("image",)``; ``labels`` and
    ``config`` as the checkpoint's. Build with :meth:`load`."""

    towers = ("image",)

    def __init__(self, info: CheckpointInfo, session: Any) -> None:
        self.config = info.config
        self.labels = info.labels
        self._session = session

    @classmethod
    def load(cls, info: CheckpointInfo) -> OnnxImageModel | None:
        """The exported image side of ``info``'s weights, or ``None`` when there is none."""
        path = find_export(info)
        if path is None or runtime_missing() is not None:
            return None
        return cls(info, _session(path))

    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[B, 1, S, S]`` grey pixels in ``[0, 1]`` -> (image embedding, joint embedding, logits)."""
        image, joint, logits = self._session.run(list(OUTPUTS), {"pixel_values": np.ascontiguousarray(pixels)})
        return image, joint, logits


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for damaged files
        first = " ".join(str(exc).split())[:200]
        raise ModelError(
            f"cannot load the ONNX image side ({first}); export it again with `cxrsearch models export-onnx "
            f"CKPT`, or delete {path.name} (and {RECORD_FILE}) to run image queries on torch",
            path=path,
        ) from None


def _image_side(model: Any) -> Any:
    import torch

    class ImageSide(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            out = self.model(pixel_values=pixel_values)
            return out.image_embedding, out.joint_embedding, out.logits

    return ImageSide().eval()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _export_checked(side: Any, path: Path, size: int) -> dict[str, float]:
    """Export ``side`` to ``path`` and check it against torch. An OSError (the place is not writable)
    passes through; anything else the exporter or onnxruntime raise is a :class:`ModelError`."""
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks turned into constants
            torch.onnx.export(
                side,
                (torch.rand(1, 1, size, size),),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=["pixel_values"],
                output_names=list(OUTPUTS),
                dynamic_axes={name: {0: "batch"} for name in ("pixel_values", *OUTPUTS)},
            )
        return _check(side, path, size)
    except (OSError, ModelError):
        raise
    except Exception as exc:  # torch.onnx (an operator it cannot export), onnxruntime, memory
        first = " ".join(str(exc).split())[:200]
        raise ModelError(
            f"the ONNX export failed ({type(exc).__name__}: {first}); image queries stay on torch"
        ) from None


def _check(side: Any, path: Path, size: int) -> dict[str, float]:
    """onnxruntime against torch on two films' worth of random pixels; raises when they differ."""
    import torch

    pixels = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = [t.float().numpy() for t in side(pixels)]
    got = _session(path).run(list(OUTPUTS), {"pixel_values": pixels.numpy()})
    image_cos = float(_cosines(reference[0], got[0]).min())
    joint_cos = float(_cosines(reference[1], got[1]).min())
    prob_diff = float(np.abs(1 / (1 + np.exp(-reference[2])) - 1 / (1 + np.exp(-got[2]))).max())
    if min(image_cos, joint_cos) < MIN_COSINE or prob_diff > MAX_PROB_DIFF:
        raise ModelError(
            f"the ONNX export differs from torch (cosine image {image_cos:.6f}, joint {joint_cos:.6f}, "
            f"probabilities {prob_diff:.2e}); image queries stay on torch",
            path=path,
        )
    return {"image_cosine": image_cos, "joint_cosine": joint_cos, "max_prob_diff": prob_diff}


def export(info: CheckpointInfo, model: Any) -> Path:
    """Export the image side of ``model`` (the torch FusionModel of ``info``, its image tower
    loaded), check it against torch, and record it; returns the ONNX file. Raises
    :class:`ModelError` when it cannot."""
    import torch

    check_export_possible()
    if "image" not in getattr(model, "towers", ()) or not isinstance(model, torch.nn.Module):
        raise ModelError("exporting the image side needs the torch model with its image tower loaded")
    side = _image_side(model)
    size = info.config.preprocess.image_size
    errors = []
    for directory in locations(info):
        tmp = directory / f"{ONNX_FILE}.tmp-{os.getpid()}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            checked = _export_checked(side, tmp, size)
            record = {
                "fingerprint": info.fingerprint,
                "format": EXPORT_FORMAT,
                "image_size": size,
                "opset": OPSET,
                "torch": torch.__version__,
                "checked": checked,
            }
            (directory / RECORD_FILE).unlink(missing_ok=True)  # no moment where an old record names the new file
            os.replace(tmp, directory / ONNX_FILE)
            write_atomic(directory / RECORD_FILE, json.dumps(record, indent=2) + "\n")
            return directory / ONNX_FILE
        except OSError as exc:  # not writable here: try the cache
            errors.append(f"{directory}: {exc.strerror or exc}")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    raise ModelError(f"cannot write the ONNX image side ({'; '.join(errors)})", path=info.path)
