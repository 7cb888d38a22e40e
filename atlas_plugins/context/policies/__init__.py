"""Built-in loading policies (context control); one module per built-in.

``eager`` (all schemas up front), ``isl`` (servers, then a server's schemas), ``itl`` (servers,
then tool names, then selected schemas) and ``search`` (ITL/ISL plus ``search_tools``).

Each module owns its policy's meta-tools, their handlers, its intro text and the reference
calls that solve a task under it. The mechanism they share (scope, the LRU set of loaded
schemas, ``check_call``, the system text's frame) is :class:`EpisodeBase` and
:class:`LoadingPolicyBase`; a plugin writes a new loading policy by subclassing both and
registering the policy through ``atlas_register_loading_policies``.
"""

from atlas_plugins.context.base import MetaResult
from atlas_plugins.context.policies._core import EpisodeBase, LoadingPolicyBase, PolicyOptions

__all__ = ["BUILTINS", "EpisodeBase", "LoadingPolicyBase", "MetaResult", "PolicyOptions"]

#: Modules in this package that register built-ins (see atlas_plugins.plugins).
BUILTINS: tuple[str, ...] = ("eager", "isl", "itl", "search")
