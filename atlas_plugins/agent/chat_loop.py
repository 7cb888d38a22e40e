"""The native agent over a chat API: episodes played through ``generate_chat`` (messages in, text
and native tool calls out), for policies that have no token interface —
:class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy` in front of any OpenAI-compatible
server (vLLM, llama.cpp, ``transformers serve``, a hosted model).

The episode is the same as in :mod:`atlas_plugins.agent.loop` — same
:class:`~atlas_plugins.agent.env.EpisodeEnv` (system text, meta-tools, ``code_interpreter``,
loading rules), same limits, same scoring — with the chat API's own tool calling:

* every turn sends the tools the episode can call *now* as the request's ``tools``: the loading
  policy's meta-tools and the schemas loaded so far (eager: all of them), or only
  ``code_interpreter`` under PTC. Function names are ``server__tool`` (a valid OpenAI name);
* a reply with native ``tool_calls`` is acted on (the first call), and its observation goes back as
  a ``tool`` message with the call's id;
* a reply without them is read with the native text parser (``<tool_call>`` / ``<answer>``), so
  models behind servers that do not parse tool calls still work; their observations go back as
  ``user`` messages (a ``tool`` message must answer a native call).

Trajectories carry messages, tool calls and the context sizes the server reports (``usage``),
but no token ids: an API reply is not token-faithful, so these episodes evaluate, never train.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from atlas_plugins.agent.env import CODE_TOOL, EnvTool, EpisodeEnv
from atlas_plugins.types import TOOL_SEP, Task, Trajectory
from atlas_plugins.wire.messages import arguments_json
from atlas_plugins.wire.toolcall import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    STOP_STRINGS,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    parse_assistant,
)

if TYPE_CHECKING:
    from atlas_plugins.agent.loop import Agent
    from atlas_plugins.policy.base import ChatPolicy

__all__ = ["api_name", "close_tags", "run_chat_episodes"]

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


def api_name(name: str) -> str:
    """An episode tool name as an OpenAI function name: ``math:add`` -> ``math__add``."""
    return _INVALID.sub("_", name.replace(TOOL_SEP, "__"))[:64]


def _schema(tool: EnvTool, name: str) -> dict[str, Any]:
    params = dict(tool.parameters or {})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return {
        "type": "function",
        "function": {"name": name, "description": tool.description[:1024], "parameters": params},
    }


@dataclass
class _ChatEpisode:
    task: Task
    traj: Trajectory
    env: EpisodeEnv
    messages: list[dict[str, Any]]
    names: dict[str, str] = field(default_factory=dict)  # API name -> episode name, for this turn's tools
    tool_calls: int = 0
    calls: int = 0
    done: bool = False
    finish: str = ""
    followups: list[str] = field(default_factory=list)


def _callable_tools(env: EpisodeEnv) -> list[EnvTool]:
    """What the episode can call now: code_interpreter (PTC), else meta-tools and loaded schemas."""
    if env.ptc:
        return [t for t in env.tools() if t.kind == "code"]
    out: list[EnvTool] = []
    if env.ctx is not None:
        out += [
            EnvTool(name=m.name, description=m.description, parameters=m.input_schema, kind="meta")
            for m in env.ctx.meta_tools()
        ]
        out += [
            EnvTool(
                name=s.qualified_name,
                description=s.description or s.name,
                parameters=dict(s.input_schema or {"type": "object", "properties": {}}),
                kind="mcp",
            )
            for s in env.ctx.loaded_tools()
        ]
    else:
        out += [t for t in env.tools() if t.kind == "mcp"]
    return out


def close_tags(text: str) -> str:
    """OpenAI servers drop the stop string that ended a reply; put a missing closing tag back."""
    lower = text.lower()
    for open_, close in ((TOOL_CALL_OPEN, TOOL_CALL_CLOSE), (ANSWER_OPEN, ANSWER_CLOSE)):
        if lower.rfind(open_) > lower.rfind(close):
            return text + close
    return text


def run_chat_episodes(
    agent: Agent, tasks: Sequence[Task], *, seed: int | None = None, progress: Any = None, max_workers: int = 8
) -> list[Trajectory]:
    """Play one episode per task through ``agent.policy.generate_chat`` (see the module docs)."""
    from atlas_plugins.wire.toolcall import EXPECTED_FORMAT

    cfg = agent.config
    policy = cast("ChatPolicy", agent.policy)  # the Agent checked it has generate_chat
    episodes: list[_ChatEpisode] = []
    for task in tasks:
        eid = f"{task.id}-{uuid.uuid4().hex[:10]}"
        env = EpisodeEnv(
            agent.toolspace,
            task,
            loading=agent.loading,
            executor=agent.executor,
            episode_id=eid,
            max_response_chars=cfg.max_response_chars,
            ptc_servers=cfg.ptc_servers,
            call_format=EXPECTED_FORMAT,
        )
        messages = [
            {"role": "system", "content": env.system_text()},
            {"role": "user", "content": cfg.user_template.format(task=task.prompt)},
        ]
        traj = Trajectory(
            task_id=task.id,
            task=task.model_dump(),
            messages=list(messages),
            metadata={
                "episode_id": eid,
                "loading": cfg.loading,
                "executor": cfg.executor,
                "policy": getattr(policy, "name", type(policy).__name__),
                "chat_api": True,
            },
        )
        episodes.append(
            _ChatEpisode(
                task=task,
                traj=traj,
                env=env,
                messages=messages,
                followups=[str(f) for f in task.metadata.get("followups") or []],
            )
        )

    def turn(ep: _ChatEpisode, turn_seed: int | None) -> Any:
        tools = _callable_tools(ep.env)
        ep.names = {api_name(t.name): t.name for t in tools}
        schemas = [_schema(t, api_name(t.name)) for t in tools] or None
        return policy.generate_chat(
            ep.messages,
            tools=schemas,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            stop=list(STOP_STRINGS),
            seed=turn_seed,
        )

    try:
        n_turn = 0
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, len(episodes) or 1)), thread_name_prefix="atlas-chat"
        ) as pool:
            while True:
                active = [ep for ep in episodes if not ep.done]
                if not active:
                    break
                turn_seed = None if seed is None else seed + n_turn
                futures = [pool.submit(turn, ep, turn_seed) for ep in active]
                for ep, fut in zip(active, futures, strict=True):
                    try:
                        gen = fut.result()
                    except Exception as exc:  # noqa: BLE001 - one episode's failed request ends that episode only
                        ep.traj.metadata["error"] = f"{type(exc).__name__}: {exc}"
                        ep.done, ep.finish = True, "error"
                        continue
                    _step(agent, ep, gen)
                n_turn += 1
                if progress is not None:
                    progress(sum(ep.done for ep in episodes), len(episodes))
    finally:
        for ep in episodes:
            ep.env.close()
    from atlas_plugins.agent.loop import finished_trajectories  # loop imports this module lazily

    return finished_trajectories(episodes)


def _step(agent: Agent, ep: _ChatEpisode, gen: Any) -> None:
    cfg, traj = agent.config, ep.traj
    traj.turns += 1
    usage = gen.usage or {}
    prompt_tokens = int(usage.get("prompt_tokens", 0))
    if traj.turns == 1:
        traj.initial_context_tokens = prompt_tokens
    traj.context_tokens = max(traj.context_tokens, prompt_tokens + int(usage.get("completion_tokens", 0)))
    text = close_tags(gen.text or "")

    native = [c for c in gen.tool_calls or [] if c.get("name")]
    if native:
        call = native[0]  # one call per turn, as in the native loop
        call_id = f"call_{traj.turns}"
        name = ep.names.get(str(call["name"]), str(call["name"]))
        arguments = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
        reply = {
            "role": "assistant",
            "content": gen.text or "",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": str(call["name"]), "arguments": arguments_json(arguments)},
                }
            ],
        }
        ep.messages.append(reply)
        traj.messages.append(dict(reply))
        _act(agent, ep, name, arguments, reply_to=call_id)
    else:
        ep.messages.append({"role": "assistant", "content": text})
        traj.messages.append({"role": "assistant", "content": text})
        parsed = parse_assistant(text)
        if parsed.answer is not None:
            _finish_user_turn(agent, ep, parsed.answer.strip(), "answer")
            return
        if parsed.tool_calls:
            if parsed.errors:
                traj.parse_failures += 1
            call = parsed.tool_calls[0]
            _act(agent, ep, ep.names.get(call.name, call.name), call.arguments, reply_to=None)
        elif parsed.errors:
            traj.parse_failures += 1
            _observe(ep, "Error: " + " ".join(e.message for e in parsed.errors), reply_to=None)
        elif gen.finish_reason == "length":
            traj.parse_failures += 1
            _observe(
                ep, "Error: your turn was cut off. Call one tool, or finish with <answer>...</answer>.", reply_to=None
            )
        else:
            _finish_user_turn(agent, ep, (parsed.content or text).strip(), "reply")
            return
    if ep.done:
        return
    if traj.turns >= cfg.max_turns:
        ep.done, ep.finish = True, "turns"
    elif traj.context_tokens >= cfg.max_context_tokens:
        ep.done, ep.finish = True, "context"


def _act(agent: Agent, ep: _ChatEpisode, name: str, arguments: dict[str, Any], *, reply_to: str | None) -> None:
    cfg, traj = agent.config, ep.traj
    if ep.tool_calls >= cfg.max_tool_calls:
        _observe(
            ep,
            f"Error: the limit of {cfg.max_tool_calls} tool calls is reached. Give your final answer now.",
            reply_to=reply_to,
        )
        ep.done, ep.finish = True, "tool_limit"
        return
    ep.tool_calls += 1
    obs = ep.env.act(name, arguments)
    traj.tool_calls += obs.records(turn=traj.turns, name=name, arguments=arguments, limit=cfg.max_response_chars)
    if not obs.ok:
        traj.tool_errors += 1
    _observe(ep, obs.text, reply_to=reply_to)


def _observe(ep: _ChatEpisode, content: str, *, reply_to: str | None, role: str | None = None) -> None:
    if role is None:
        role = "tool" if reply_to is not None else "user"
    message: dict[str, Any] = {"role": role, "content": content}
    if role == "tool" and reply_to is not None:
        message["tool_call_id"] = reply_to
    ep.messages.append(message)
    ep.traj.messages.append(dict(message))


def _finish_user_turn(agent: Agent, ep: _ChatEpisode, answer: str, finish: str) -> None:
    ep.traj.final_answer = answer
    if ep.followups:
        _observe(ep, agent.config.user_template.format(task=ep.followups.pop(0)), reply_to=None, role="user")
        return
    ep.done, ep.finish = True, finish


# ``code_interpreter`` keeps its name on the wire (it is a valid function name already).
assert api_name(CODE_TOOL) == CODE_TOOL
