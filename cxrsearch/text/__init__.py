"""Text side of the model: the report text the model reads (``report``); tokenisation helpers."""
