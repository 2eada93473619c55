"""Names every layer shares, in a module that imports nothing (the CLI's ``--help`` reads it).

- :data:`DEFAULT_COLLECTION`: the collection every command reads and writes unless given
  ``--collection``; the one place this name is written.
- :data:`DEFAULT_SCHEMA`: the schema (``collections/<name>.json``) a missing collection is created from.
- :data:`VIEWS`: the normalised radiograph views (:func:`cxrsearch.image.view.normalise_view` makes
  them, the store's integrity check accepts them, search filters on them).
"""

DEFAULT_COLLECTION = "cases"
DEFAULT_SCHEMA = "cases"
VIEWS = ("PA", "AP", "LATERAL")
