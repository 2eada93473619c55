"""Search: a :class:`QuerySpec` (text, image, both, or an indexed example + label/view/split filters)
-> the checkpoint's embeddings -> filtered nearest neighbours in a collection -> :class:`Hit` list.

- :mod:`~cxrsearch.search.spec`: :class:`QuerySpec`, validation of labels, views and splits
- :mod:`~cxrsearch.search.query`: :func:`search` and how each mode uses the named vectors
- :mod:`~cxrsearch.search.results`: hits as JSON records and display helpers

See docs/search.md. Importing this package is light (no torch, no qdrant).
"""

from cxrsearch.search.query import MODE_VECTORS, encoder_for, find_example, query_store, search
from cxrsearch.search.results import hit_record
from cxrsearch.search.spec import MODES, QuerySpec

__all__ = ["MODES", "MODE_VECTORS", "QuerySpec", "encoder_for", "find_example", "hit_record", "query_store", "search"]
