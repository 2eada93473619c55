"""Why a hit matched a query: faithful, checked explanations (see docs/explain.md).

Modules (import them directly; this package imports nothing heavy, so the CLI stays fast):

- :mod:`~cxrsearch.explain.explain`: ``explain(ExplainRequest, store, checkpoint) -> Explanation``,
  the whole pipeline, pure (it writes nothing);
- :mod:`~cxrsearch.explain.explanation`: :class:`Explanation` and ``to_dict()`` (the ``--json`` output);
- :mod:`~cxrsearch.explain.request`: :class:`ExplainRequest`, the query vector and the hit;
- :mod:`~cxrsearch.explain.target`: :class:`Target`, the score being explained (cosine or logit);
- :mod:`~cxrsearch.explain.attribution`: Integrated Gradients on the hit's pixels (Captum);
- :mod:`~cxrsearch.explain.tokens`: Layer Integrated Gradients on the report's word embeddings,
  merged from word pieces into words;
- :mod:`~cxrsearch.explain.attention`: text -> image cross-attention rolled out over the fusion layers;
- :mod:`~cxrsearch.explain.heatmap`: canvas maps back onto the original film, and their statistics;
- :mod:`~cxrsearch.explain.render`, :mod:`~cxrsearch.explain.output`: overlay PNGs, the figure,
  coloured report text for the terminal, the JSON file; ``write_explanation(explanation, request)``
  writes them (the CLI and the server call it after ``explain``).
"""
