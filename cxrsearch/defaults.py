"""Default names every layer shares, in a module that imports nothing (the CLI's ``--help`` reads it).

- :data:`DEFAULT_COLLECTION`: the collection every command reads and writes unless given
  ``--collection``; the one place this name is written.
- :data:`DEFAULT_SCHEMA`: the schema (``collections/<name>.json``) a missing collection is created from.
"""

DEFAULT_COLLECTION = "cases"
DEFAULT_SCHEMA = "cases"
