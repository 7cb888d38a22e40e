"""Built-in reward aggregators: ``atlas``, ``weighted_mean``, ``gated``, ``group_relative``."""

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("atlas", "weighted_mean", "gated", "group_relative")
