"""The extension points of atlas-plugins.

Each ``atlas_register_*`` hook receives a ``register(name, factory)`` callable. A plugin calls
it once per thing it provides; ``factory(**options)`` must return the component. The same
hooks register the built-ins (see :mod:`atlas_plugins.plugins`), so a third-party plugin is
exactly as capable as a built-in one.

A minimal plugin module::

    import atlas_plugins

    @atlas_plugins.hookimpl
    def atlas_register_rubric_providers(register):
        register("my-rubrics", MyRubricProvider)

and in its ``pyproject.toml``::

    [project.entry-points.atlas_plugins]
    my_rubrics = "my_package.plugin"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # typer stays out of the env server processes, which import this module
    import typer

    from atlas_plugins.types import Trajectory

hookspec = pluggy.HookspecMarker("atlas_plugins")
hookimpl = pluggy.HookimplMarker("atlas_plugins")

Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def atlas_register_retrievers(register: Register) -> None:
    """Register tool retrievers.

    A retriever indexes a catalogue of :class:`~atlas_plugins.types.ToolSpec` and answers
    ``search(query, k) -> list[hit]``. Used by the ``search`` loading policy and
    ``atlas retrieve``. Built-ins: ``bm25``, ``dense``, ``hybrid``.
    """


@hookspec
def atlas_register_loading_policies(register: Register) -> None:
    """Register loading policies (context control).

    A loading policy decides which tool schemas the model sees at the start of an episode,
    which meta-tools it may call to load more, and what each meta-call returns.
    Built-ins: ``eager``, ``isl``, ``itl``, ``search``.
    """


@hookspec
def atlas_register_executors(register: Register) -> None:
    """Register code executors for the ``code_interpreter`` meta-tool.

    An executor runs model-written Python in a persistent sandboxed session where each MCP
    server is a Python object. Built-ins: ``local`` (bubblewrap sandbox), ``e2b``.
    """


@hookspec
def atlas_register_rubric_providers(register: Register) -> None:
    """Register rubric providers.

    A provider turns a task into a fixed :class:`~atlas_plugins.Rubric` (cached; never
    regenerated during training). Built-ins: ``static``, ``template``, ``llm``.
    """


@hookspec
def atlas_register_judges(register: Register) -> None:
    """Register judges.

    A judge scores every criterion of a rubric in [0, 1] from a trajectory.
    Built-ins: ``rules``, ``hf``, ``openai``.
    """


@hookspec
def atlas_register_aggregators(register: Register) -> None:
    """Register reward aggregators.

    An aggregator turns per-criterion scores into one reward plus per-category scores.
    Built-ins: ``atlas``, ``weighted_mean``, ``gated``, ``group_relative``.
    """


@hookspec
def atlas_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``atlas`` CLI (like simonw/llm's ``register_commands``).

    ``app`` is a :class:`typer.Typer`: decorate functions with ``@app.command("name")`` or add
    a group with ``app.add_typer(sub, name="name")``. Use the helpers of
    :mod:`atlas_plugins.cli_support` (``print_json``, ``fail``, ``open_toolspace``) so that
    ``--json`` behaves as in the built-in commands, and import anything heavy inside the
    command function, not at module level: every ``atlas`` start-up loads the plugin.

    Every built-in area (``atlas context``, ``atlas exec``, ``atlas train``, ...) registers
    through this hook too. A plugin that raises here is reported by name and distribution
    (``atlas plugins`` lists it as broken) and the other commands keep working; a command name
    that two plugins register fails with an error naming both when it is run. Example::

        @atlas_plugins.hookimpl
        def atlas_register_commands(app):
            @app.command("hello")
            def hello(name: str = "world") -> None:
                print(f"hello {name}")
    """


@hookspec
def atlas_before_tool_call(server: str, tool: str, arguments: dict[str, Any]) -> bool | str | None:
    """Called before every MCP tool call made through a toolspace (sandboxed code included).

    Return ``False`` (or a string giving the reason) to veto the call: the model then
    receives a "blocked by policy" observation instead of the result. Return ``None`` or
    ``True`` to allow it. Every implementation is consulted; one veto is enough.
    """


@hookspec
def atlas_on_trajectory(trajectory: Trajectory) -> None:
    """Called with every finished :class:`~atlas_plugins.types.Trajectory` (after scoring)."""


@hookspec
def atlas_on_train_step(metrics: dict[str, Any]) -> None:
    """Called after every training step with that step's metrics (reward per category, ...)."""
