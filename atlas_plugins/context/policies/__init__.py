"""Built-in loading policies (context control); one module per built-in.

``eager`` (all schemas up front), ``isl`` (servers, then a server's schemas), ``itl`` (servers,
then tool names, then selected schemas) and ``search`` (ITL/ISL plus ``search_tools``). The
shared episode machinery is in :mod:`atlas_plugins.context.policies._core`.
"""

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("eager", "isl", "itl", "search")
