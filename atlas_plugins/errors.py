"""Exceptions raised by atlas-plugins. Tool-call failures are values, not exceptions
(see :class:`atlas_plugins.types.ToolResult`); these are for misconfiguration."""


class AtlasError(Exception):
    """Base class for errors a user can act on; the message says what to change."""


class ConfigError(AtlasError):
    """A configuration file or value is invalid; the message names the file and field."""


class ToolspaceError(AtlasError):
    """A toolspace could not be started or used (e.g. a server failed to start)."""
