"""``anyclip serve``: an HTTP service for embeddings, zero-shot classification and index search, with a web page.

Modules: :mod:`.command` (the CLI), :mod:`.app` (routes), :mod:`.engine` (model calls), :mod:`.batcher`
(dynamic batching), :mod:`.payloads` (request checks), :mod:`.middleware` (request ids, API key, metrics),
:mod:`.metrics` (Prometheus), :mod:`.settings` (limits), :mod:`.default_index` (the offline default index),
``page/`` (the static web page). Needs ``pip install 'anyclip[serve]'``.

Example:
    >>> from anyclip.serve.app import create_app  # doctest: +SKIP
"""
