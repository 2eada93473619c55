"""Evaluation: how good a checkpoint is at predicting labels and at finding relevant cases, next to
simple baselines, on the real Open-i splits (``cxrsearch evaluate``; see docs/evaluation.md).

- :mod:`~cxrsearch.evaluate.metrics`: P@k, R@k, AP@k (mAP), nDCG@k with graded gains, MRR
- :mod:`~cxrsearch.evaluate.relevance`: primary label, strict / lenient relevance, Jaccard gains
- :mod:`~cxrsearch.evaluate.baselines`: BM25 (bm25s), untrained towers, random
- :mod:`~cxrsearch.evaluate.casebase`: the studies indexed into an evaluation collection (qdrant-edge)
- :mod:`~cxrsearch.evaluate.classification`: per-label / macro AUROC, AP, F1 at the checkpoint's thresholds
- :mod:`~cxrsearch.evaluate.retrieval`: settings x modes x methods through ``cxrsearch.search``
- :mod:`~cxrsearch.evaluate.crossmodal`: the CXR-CLIP Open-I image <-> report recall protocol
- :mod:`~cxrsearch.evaluate.run`: :func:`~cxrsearch.evaluate.run.evaluate`, the whole run
- :mod:`~cxrsearch.evaluate.report`: JSON, markdown report and PNG plot

Importing this package is light (no torch, no qdrant); the model loads when a run starts.
"""
