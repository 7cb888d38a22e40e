"""Finetune a DSPy program's small model in place (extra: ``dspy``).

* :class:`AtlasLM` — a ``dspy.BaseLM`` over a trainable ATLAS policy that records every call
  token for token;
* :func:`toolspace_tools` — the toolspace's MCP tools as ``dspy.Tool`` objects (``dspy.ReAct``);
* :class:`DSPyRunner` — runs the program per task as a GRPO runner for
  :class:`~atlas_plugins.training.trainer.AtlasTrainer` (``runner=DSPyRunner(...)``);
* :func:`demonstrations` — scripted reference solutions played through the program, for a
  warm start before GRPO (a small model has to learn DSPy's output format first).

Importing this package without DSPy installed says which extra to install.
"""

try:
    import dspy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError("atlas_dspy needs DSPy: pip install 'atlas-plugins[dspy]'") from exc

from atlas_dspy.lm import AtlasLM, Recording, current_recording, recording
from atlas_dspy.runner import DSPyRunner, default_input_fn, demonstrations, react_replies
from atlas_dspy.tools import EpisodeState, ToolspaceTool, current_episode, episode, tool_name, toolspace_tools

__all__ = [
    "AtlasLM",
    "DSPyRunner",
    "EpisodeState",
    "Recording",
    "ToolspaceTool",
    "current_episode",
    "current_recording",
    "default_input_fn",
    "demonstrations",
    "episode",
    "react_replies",
    "recording",
    "tool_name",
    "toolspace_tools",
]
