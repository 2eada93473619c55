"""Workflows: multi-step jobs composed from the library (find the data, train, index, search), each
called by a thin CLI command that only parses options and renders what the workflow returns.

A workflow prints nothing: it reports progress and notices through a callback and returns a result
dataclass. Like the rest of the library, nothing here imports torch at import time.
"""
