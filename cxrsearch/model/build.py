"""A :class:`~cxrsearch.model.fusion.FusionModel` from a :class:`~cxrsearch.model.config.ModelConfig`.

Kept apart from ``config.py`` so that the configs (pure data, no torch) sit below the model modules
that read them, and this builder above both.

Public API::

    create_model(config, labels) -> FusionModel       # loads/initialises towers (image_tower.py, text_tower.py)
"""

from __future__ import annotations

from collections.abc import Sequence

from cxrsearch.model.config import ModelConfig
from cxrsearch.model.fusion import FusionModel
from cxrsearch.model.image_tower import build_image_tower
from cxrsearch.model.text_tower import build_text_tower


def create_model(config: ModelConfig, labels: Sequence[str]) -> FusionModel:
    """Build the :class:`~cxrsearch.model.fusion.FusionModel` for ``config`` with one logit per label.

    Tower weights are loaded from each tower's ``source`` (may read large files, or download when
    the source is ``hub``); failures raise :class:`ModelError` in one line.
    """
    return FusionModel(config, labels, build_image_tower(config), build_text_tower(config))
