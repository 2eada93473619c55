"""Self-contained checkpoints: ``model.safetensors`` + ``config.json`` + ``tokenizer/``. Never unpickles.

Layout of a checkpoint directory::

    model.safetensors   every weight of the FusionModel (towers included)
    config.json         format + version, the ModelConfig (towers with their sources and revisions,
                        a Hub tower's revision being the commit its weights came from; fusion,
                        preprocessing), the label vocabulary (head order), per-label decision
                        thresholds, the text tower's transformers config (to rebuild it offline), the
                        training-data fingerprint, metrics, ``fingerprint`` (sha256 of
                        model.safetensors), library versions, creation time, free-form ``extra``
    tokenizer/          ``tokenizer.save_pretrained`` output

Loading needs no network and no tower source: architectures are rebuilt from ``config.json`` and
every weight comes from ``model.safetensors``. Files are written under temporary names and moved into
place one by one, ``config.json`` last; a torn write is caught by the fingerprint check on load
(hashed once, then trusted while the file is unchanged: ``.verified.json``, see ``load_checkpoint``).
Other files in the directory (e.g. a training state) are left alone.

Public API::

    save_checkpoint(directory, model, *, thresholds, data_fingerprint=None, metrics=None, extra=None)
        -> CheckpointInfo
    read_checkpoint_info(directory) -> CheckpointInfo      # config.json only: no torch, instant
    load_checkpoint(directory, device="cpu", verify=True, towers=("image", "text"), runtime="torch")
        -> Checkpoint
    export_image_side(directory) -> Path                   # ONNX image side, for torch-free image queries
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cxrsearch.errors import ModelError
from cxrsearch.files import write_atomic
from cxrsearch.model.checkpoint_info import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    CheckpointInfo,
    read_checkpoint_info,
    thresholds_in_order,
)
from cxrsearch.model.config import ModelConfig
from cxrsearch.paths import cache_for

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.numpy_text import NumpyTextModel
    from cxrsearch.model.onnx_image import OnnxImageModel
    from cxrsearch.model.text_tower import TextTower

__all__ = [  # the checkpoint API is one import; what config.json says lives in checkpoint_info
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "RUNTIMES",
    "STAMP_FILE",
    "TOKENIZER_DIR",
    "TOWERS",
    "WEIGHTS_FILE",
    "Checkpoint",
    "CheckpointInfo",
    "export_image_side",
    "file_sha256",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
    "stamp_paths",
]


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) plus everything in :class:`CheckpointInfo`.

    ``model`` is a :class:`FusionModel`, or for a text-only load with the numpy runtime a
    :class:`~cxrsearch.model.numpy_text.NumpyTextModel`, or for an image-only load with the onnx
    runtime an :class:`~cxrsearch.model.onnx_image.OnnxImageModel`.

    ``path``, ``config``, ``labels``, ``thresholds``, ``fingerprint`` and ``metrics`` read through
    to ``info``.
    """

    info: CheckpointInfo
    model: FusionModel | NumpyTextModel | OnnxImageModel

    path = property(lambda self: self.info.path)
    config = property(lambda self: self.info.config)
    labels = property(lambda self: self.info.labels)
    thresholds = property(lambda self: self.info.thresholds)
    fingerprint = property(lambda self: self.info.fingerprint)
    metrics = property(lambda self: self.info.metrics)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_ready(value: Any, what: str) -> Any:
    try:
        return json.loads(
            json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o), allow_nan=False)
        )
    except ValueError as exc:
        raise ModelError(f"checkpoint {what} are not JSON-serialisable: {exc}") from None


def _versions(config: ModelConfig) -> dict[str, str]:
    """Library versions, plus the Python package a ``python-package:`` tower was read from."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    packages = [t.source_arg for t in (config.image, config.text) if t.source_kind == "python-package"]
    for name in ("cxrsearch", "torch", "timm", "transformers", "safetensors", *packages):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def _config_as_trained(model: FusionModel) -> dict[str, Any]:
    """``model.config`` as JSON, each Hub tower's ``revision`` replaced by the commit its weights were
    read from (``weights_commit``: the Hub's answer at download time, e.g. what ``main`` was then), so
    that a checkpoint names exactly what it was trained from. A loaded checkpoint's towers have no
    ``weights_commit``: their config already holds the commit."""
    config = model.config.to_dict()
    for side, tower in (("image", model.image_tower), ("text", model.text_tower)):
        commit = getattr(tower, "weights_commit", None)
        if commit and config[side]["source"] == "hub":
            config[side]["revision"] = commit
    return config


def save_checkpoint(
    directory: str | Path,
    model: FusionModel,
    *,
    thresholds: Sequence[float] | Mapping[str, float],
    data_fingerprint: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Write ``model`` (its config, labels and tokenizer included) as a checkpoint in ``directory``.

    ``thresholds``: one probability per label (sequence in ``model.labels`` order, or a mapping by
    label name), tuned on the validation split by training. Returns the info that was written.
    """
    from safetensors.torch import save_model

    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    ordered = thresholds_in_order(model.labels, thresholds)
    weights_tmp = target / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    # One metadata key only: safetensors writes the metadata map in hash order, so two keys would make
    # the bytes (and the fingerprint) of identical weights differ from one save to the next.
    save_model(model, str(weights_tmp), metadata={"format": "pt"}, force_contiguous=True)
    fingerprint = file_sha256(weights_tmp)
    tokenizer_tmp = Path(tempfile.mkdtemp(prefix=f".{TOKENIZER_DIR}.tmp-", dir=target))
    model.tokenizer.save_pretrained(str(tokenizer_tmp))
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": _config_as_trained(model),
        "labels": list(model.labels),
        "thresholds": list(ordered),
        "fingerprint": fingerprint,
        "weights_bytes": weights_tmp.stat().st_size,
        "data_fingerprint": data_fingerprint,
        "metrics": _json_ready(dict(metrics or {}), "metrics"),
        "text_tower_config": _json_ready(cast("TextTower", model.text_tower).hf_config_dict(), "text tower config"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(model.config),
        "extra": _json_ready(dict(extra or {}), "extra fields"),
    }
    config_tmp = target / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    config_tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(weights_tmp, target / WEIGHTS_FILE)
    old_tokenizer = target / TOKENIZER_DIR
    if old_tokenizer.exists():
        shutil.rmtree(old_tokenizer)
    os.replace(tokenizer_tmp, old_tokenizer)
    os.replace(config_tmp, target / CONFIG_FILE)
    return read_checkpoint_info(target)


TOWERS = ("image", "text")
"""The towers a checkpoint holds; :func:`load_checkpoint` builds the ones asked for."""

STAMP_FILE = ".verified.json"
"""Written beside ``model.safetensors`` (or in the cache dir when the checkpoint is read-only) once
its sha256 matched ``config.json``: the file's identity then, so that later loads skip the hash."""


RUNTIMES = ("torch", "numpy", "onnx", "auto")


def load_checkpoint(
    directory: str | Path,
    device: str = "cpu",
    verify: bool = True,
    towers: Sequence[str] = TOWERS,
    runtime: str = "torch",
) -> Checkpoint:
    """Rebuild the model from a checkpoint directory, offline. The model is returned in eval mode.

    ``verify``: check the sha256 of ``model.safetensors`` against ``config.json`` (about 1 s per
    500 MB), once: a verified file is stamped (size, mtime, ctime, inode, fingerprint; see
    :data:`STAMP_FILE`) and trusted while it is unchanged; a changed file is hashed again. The size
    is always checked.

    ``towers``: the towers to build and load, ``("image", "text")`` by default. A query needs one:
    ``("text",)`` never imports timm nor reads the image tower's weights, ``("image",)`` never
    builds the text tower (nor its tokenizer). Projections, fusion and heads are always loaded.

    ``runtime``: ``"torch"`` (the reference), ``"numpy"`` (text only: the text side of the model in
    numpy, :mod:`cxrsearch.model.numpy_text`, no torch import; ``model`` is then a
    :class:`~cxrsearch.model.numpy_text.NumpyTextModel`), ``"onnx"`` (image only: the checkpoint's
    ONNX export on onnxruntime, :mod:`cxrsearch.model.onnx_image`, no torch import; ``model`` is an
    :class:`~cxrsearch.model.onnx_image.OnnxImageModel`), or ``"auto"``: numpy for a text-only load
    of an architecture it implements, onnx for an image-only load with an export of these weights,
    else torch.
    """
    wanted = tuple(name for name in TOWERS if name in towers)
    if not wanted or len(wanted) != len(set(towers)):
        raise ModelError(f"towers must be some of {', '.join(TOWERS)}, not {list(towers)}")
    if runtime not in RUNTIMES:
        raise ModelError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "numpy" and wanted != ("text",):
        raise ModelError("the numpy runtime serves text-only loads (towers=('text',))")
    if runtime == "onnx" and wanted != ("image",):
        raise ModelError("the onnx runtime serves image-only loads (towers=('image',))")
    info = read_checkpoint_info(directory)
    weights = info.path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"checkpoint weights {WEIGHTS_FILE} are missing", path=info.path)
    if weights.stat().st_size != info.weights_bytes or (verify and not _verified(weights, info.fingerprint)):
        raise ModelError(
            f"checkpoint weights do not match {CONFIG_FILE} (truncated, replaced or torn write)", path=weights
        )
    tokenizer_dir = info.path / TOKENIZER_DIR
    if "text" in wanted and not tokenizer_dir.is_dir():
        raise ModelError(f"checkpoint {TOKENIZER_DIR}/ directory is missing", path=info.path)
    fast = _torch_free(info, wanted, runtime)
    if fast is not None:
        return fast
    return Checkpoint(info=info, model=_torch_model(info, wanted, weights, tokenizer_dir, device))


def _torch_free(info: CheckpointInfo, wanted: tuple[str, ...], runtime: str) -> Checkpoint | None:
    """The torch-free runtime ``runtime`` picks for a one-tower load, or ``None`` (torch serves it)."""
    if runtime != "torch" and wanted == ("text",):
        from cxrsearch.model.numpy_text import NumpyTextModel, supported

        if runtime == "numpy" or supported(info) is None:
            return Checkpoint(info=info, model=NumpyTextModel.load(info))
    if runtime in ("auto", "onnx") and wanted == ("image",):
        from cxrsearch.model.onnx_image import OnnxImageModel, runtime_missing

        onnx_model = OnnxImageModel.load(info)
        if onnx_model is not None:
            return Checkpoint(info=info, model=onnx_model)
        if runtime == "onnx":
            why = (
                runtime_missing() or "the checkpoint has no ONNX export of these weights (cxrsearch models export-onnx)"
            )
            raise ModelError(f"no ONNX image side: {why}", path=info.path)
    return None


def _torch_model(
    info: CheckpointInfo, wanted: tuple[str, ...], weights: Path, tokenizer_dir: Path, device: str
) -> FusionModel:
    """The FusionModel with the ``wanted`` towers, projections, fusion and heads, in eval mode."""
    from cxrsearch.model.fusion import FusionModel

    config = info.config
    try:
        with _open_weights(weights, device) as handle:
            keys = [key for key in handle.keys() if _part_of(key) in wanted + ("fusion",)]  # noqa: SIM118  (a safetensors handle has keys() but is not iterable)
            dims = {name: int(handle.get_slice(f"{name}_embed_proj.weight").get_shape()[1]) for name in TOWERS}
            model = FusionModel(
                config,
                info.labels,
                _image_tower(config) if "image" in wanted else None,
                _text_tower(info, tokenizer_dir) if "text" in wanted else None,
                image_dim=dims["image"],
                text_dim=dims["text"],
            )
            _load_state(model, {key: handle.get_tensor(key) for key in keys})
    except ModelError as exc:
        raise ModelError(exc.message, path=exc.path or weights) from None
    except Exception as exc:  # safetensors / torch raise several types for bad files or mismatches
        first = " ".join(str(exc).split())[:300]
        raise ModelError(f"cannot load checkpoint weights: {first}", path=weights) from None
    return model.to(device).eval()


def export_image_side(directory: str | Path) -> Path:
    """Load the checkpoint in ``directory`` with torch (image side) and export that side to ONNX
    (:func:`cxrsearch.model.onnx_image.export`): image queries then run without torch.

    Refuses a checkpoint that never learned from radiographs: its image queries are refused too."""
    from cxrsearch.model.onnx_image import check_export_possible, export

    info = read_checkpoint_info(directory)
    if info.trained_modalities == ("text",):
        raise ModelError(
            "this checkpoint learned from reports only: it answers no image queries to export", path=info.path
        )
    check_export_possible()  # before the torch model is built for nothing
    return export(info, load_checkpoint(directory, towers=("image",), runtime="torch").model)


def _part_of(key: str) -> str:
    """``"image"`` / ``"text"`` for a tower's weight, ``"fusion"`` for everything else."""
    head = key.split(".", 1)[0]
    return {"image_tower": "image", "text_tower": "text"}.get(head, "fusion")


def _open_weights(weights: Path, device: str) -> Any:
    from safetensors import safe_open

    return safe_open(str(weights), framework="pt", device=str(device))


def _image_tower(config: ModelConfig) -> Any:
    from cxrsearch.model.image_tower import build_image_tower

    return build_image_tower(config, pretrained=False)


def _text_tower(info: CheckpointInfo, tokenizer_dir: Path) -> Any:
    from cxrsearch.model.text_tower import text_tower_from_parts

    return text_tower_from_parts(dict(info.text_tower_config), tokenizer_dir, info.config.text.pooling)


def _load_state(model: FusionModel, state: dict[str, Any]) -> None:
    """``model.load_state_dict(state)``, strict, except that a tied weight saved once (safetensors
    keeps one name per shared tensor) may be missing under its other names."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = model.state_dict()
    loaded = {own[key].data_ptr() for key in state if key in own}
    missing = [key for key in missing if own[key].data_ptr() not in loaded]
    if missing or unexpected:
        raise ModelError(
            "cannot load checkpoint weights: they do not fit the model "
            f"(missing {missing[:5]}, unexpected {list(unexpected)[:5]})"
        )


# ---------------------------------------------------------------- verification stamp


def _stamp_of(weights: Path, fingerprint: str) -> dict[str, Any]:
    """What identifies ``weights`` as the file that was hashed: any write moves mtime and ctime
    (ctime cannot be set back by hand), a replacement changes the inode."""
    st = weights.stat()
    return {
        "file": WEIGHTS_FILE,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
        "fingerprint": fingerprint,
    }


def stamp_paths(weights: Path) -> tuple[Path, Path]:
    """Where the verification stamp of ``weights`` lives: beside it, else (a read-only checkpoint)
    in ``<cache dir>/verified/``, named by the checkpoint's absolute path."""
    return weights.parent / STAMP_FILE, cache_for(weights, "verified").with_suffix(".json")


def _verified(weights: Path, fingerprint: str) -> bool:
    """Whether ``weights`` hashes to ``fingerprint``: trusted from a matching stamp, else hashed
    (and stamped when it matches)."""
    current = _stamp_of(weights, fingerprint)
    for path in stamp_paths(weights):
        try:
            if json.loads(path.read_text(encoding="utf-8")) == current:
                return True
        except (OSError, ValueError):
            continue
    if file_sha256(weights) != fingerprint:
        return False
    if _stamp_of(weights, fingerprint) == current:  # unchanged while it was hashed
        for path in stamp_paths(weights):
            if _write_stamp(path, current):
                break
    return True


def _write_stamp(path: Path, stamp: dict[str, Any]) -> bool:
    """Write ``stamp`` atomically; False where the place is not writable (the load goes on)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(stamp) + "\n")
    except OSError:
        return False
    return True
