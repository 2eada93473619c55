"""The image-text fusion model.

Modules (import them directly; this package imports nothing heavy so the CLI stays fast):

- :mod:`~cxrsearch.model.config`: ``list_models()``, ``get_config(name)``; frozen ``ModelConfig`` /
  ``TowerConfig`` / ``FusionConfig`` / ``PreprocessConfig`` (data only: no model module imported).
- :mod:`~cxrsearch.model.build`: ``create_model(config, labels) -> FusionModel``.
- :mod:`~cxrsearch.model.image_tower` (timm), :mod:`~cxrsearch.model.text_tower` (transformers):
  the towers (hub, local dir, Python package or random weights; :mod:`~cxrsearch.model.hub`
  resolves where weights live).
- :mod:`~cxrsearch.model.fusion`: ``FusionModel`` -> :class:`~cxrsearch.model.output.ModelOutput`.
- :mod:`~cxrsearch.model.checkpoint`: ``save_checkpoint``, ``load_checkpoint``, ``export_image_side``
  (safetensors + JSON, never pickle); :mod:`~cxrsearch.model.checkpoint_info`:
  ``read_checkpoint_info`` (``config.json`` only).
- :mod:`~cxrsearch.model.encode`: ``Encoder``, the only place inputs become tensors (or, for the
  torch-free query runtimes :mod:`~cxrsearch.model.numpy_text` and
  :mod:`~cxrsearch.model.onnx_image`, numpy arrays).
- :mod:`~cxrsearch.model.losses`, training modules: how the model is trained.
"""
