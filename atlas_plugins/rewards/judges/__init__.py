"""Built-in judges: ``rules`` (exact checks), ``hf`` (local model), ``openai`` (endpoint)."""

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("rules", "hf", "openai")
