"""Open-i data layer: reports -> :class:`~cxrsearch.data.openi.Study`, labels, splits, image pairing.

- :mod:`cxrsearch.data.openi`: ``Study``, ``parse_report``, ``load_studies`` (tgz, XML folder or data folder)
- :mod:`cxrsearch.data.labels`: the label vocabulary (``labels.json``) and the MeSH -> label mapping
- :mod:`cxrsearch.data.splits`: the deterministic study-level train/val/test split
- :mod:`cxrsearch.data.pairing`: image files <-> image ids, view positions from the metadata table
- :mod:`cxrsearch.data.info`: dataset summary for ``cxrsearch data info``
"""

from cxrsearch.data.labels import label_names, labels_from_mesh
from cxrsearch.data.openi import Study, load_studies, parse_report
from cxrsearch.data.splits import split_of

__all__ = ["Study", "label_names", "labels_from_mesh", "load_studies", "parse_report", "split_of"]
