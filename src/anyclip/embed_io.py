"""Moved to :mod:`anyclip.embed.io`; this name stays for existing imports.

Example:
    >>> from anyclip.embed_io import write_embeddings  # same function as anyclip.embed.io.write_embeddings
"""

from .embed.io import write_embeddings, write_errors

__all__ = ["write_embeddings", "write_errors"]
