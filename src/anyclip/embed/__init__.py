"""Embedding at scale: resumable sharded jobs, FAISS indexes and search (``anyclip embed / index / search``).

Example:
    >>> from anyclip.embed import EmbedSettings, list_inputs
    >>> settings = EmbedSettings(kind="text", model="anyclip-shapes", tag="v1", shard_size=2)
    >>> [item.name for item in list_inputs(["a red circle", "a blue square"], kind="text-literal").items]
    ['a red circle', 'a blue square']
"""

from .io import write_embeddings, write_errors
from .job import EmbedJobError, EmbedSettings, ShardEncoder, run_embed_job
from .sources import Inputs, Item, list_inputs

__all__ = ["EmbedJobError", "EmbedSettings", "Inputs", "Item", "ShardEncoder", "list_inputs", "run_embed_job",
           "write_embeddings", "write_errors"]
