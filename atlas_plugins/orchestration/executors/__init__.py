"""Built-in plugins for this extension point; one module per built-in."""

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("local", "e2b")
