"""The image-text fusion model.

Modules (import them directly; this package imports nothing heavy so the CLI stays fast):

- :mod:`~cxrsearch.model.config`: ``list_models()``, ``get_config(name)``, ``create_model(config,
  labels)``; frozen ``ModelConfig`` / ``TowerConfig`` / ``FusionConfig`` / ``PreprocessConfig``.
- :mod:`~cxrsearch.model.towers`: timm image tower and transformers text tower (hub, local dir,
  Python package or random weights; :mod:`~cxrsearch.model.hub` resolves where weights live).
- :mod:`~cxrsearch.model.fusion`: ``FusionModel`` -> :class:`~cxrsearch.model.output.ModelOutput`.
- :mod:`~cxrsearch.model.checkpoint`: ``save_checkpoint``, ``load_checkpoint``,
  ``read_checkpoint_info`` (safetensors + JSON, never pickle).
- :mod:`~cxrsearch.model.encode`: ``Encoder``, the only place inputs become tensors.
- :mod:`~cxrsearch.model.losses`, training modules: how the model is trained.
"""
