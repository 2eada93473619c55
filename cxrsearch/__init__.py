"""cxrsearch: chest X-ray case search with image-text fusion embeddings in Qdrant.

Importing the package is cheap: heavy libraries (torch, transformers, timm, captum, qdrant) are
imported inside the functions that need them.
"""

__version__ = "0.1.0"
