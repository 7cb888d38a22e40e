"""The native ATLAS agent: multi-turn tool use under a loading policy, batched across episodes.

One call of :func:`run_episodes` plays a batch of episodes (typically a GRPO group, or several)
in lock step: every turn, all unfinished episodes generate together in one batched call of
the policy, then each turn is parsed and acted on:

* ``<answer>…</answer>`` (or a turn that ends without a tool call) finishes the episode;
* a tool call goes to the episode's :class:`~atlas_plugins.agent.env.EpisodeEnv` (meta-tools,
  ``code_interpreter``, ``server:tool``; the same rules the LangGraph and DSPy adapters use);
* anything unreadable becomes an error observation that teaches the expected format.

Trajectories are token-faithful (see :mod:`atlas_plugins.agent.rendering`): model tokens are
the sampled ids with their logprobs (``env_mask`` 1); observations are environment tokens
(``env_mask`` 0, logprob 0.0) that the trainer masks out of the loss.

A policy without a token interface (no ``tokenizer``, only ``generate_chat``: an
:class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy` on any OpenAI-compatible server) plays
the same episodes through the chat API and its own tool calling instead
(:mod:`atlas_plugins.agent.chat_loop`): for evaluation, not training.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field

from atlas_plugins.agent.env import CODE_TOOL, EpisodeEnv
from atlas_plugins.errors import AtlasError
from atlas_plugins.recording.rendering import TurnTemplate, encode, probe_template
from atlas_plugins.types import Task, TokenizerLike, Trajectory
from atlas_plugins.wire.special_tokens import defuse
from atlas_plugins.wire.toolcall import EXPECTED_FORMAT, STOP_STRINGS, parse_assistant

if TYPE_CHECKING:
    from atlas_plugins.policy.base import ChatPolicy, TokenPolicy
    from atlas_plugins.toolspace import Toolspace

__all__ = ["CODE_TOOL", "STOP_STRINGS", "Agent", "AgentConfig", "run_episodes"]


class AgentConfig(BaseModel):
    """Limits and sampling for the native agent (paper defaults where the paper has one)."""

    loading: str = Field(default="itl", description="loading policy: eager, isl, itl, search, or a plugin's")
    loading_options: dict[str, Any] = Field(default_factory=dict)
    executor: str | None = Field(
        default=None, description="executor for code_interpreter (PTC), e.g. 'local'; None = off"
    )
    executor_options: dict[str, Any] = Field(default_factory=dict)
    max_tool_calls: int = Field(default=20, ge=1, description="paper: at most 20 tool calls per episode")
    max_turns: int = Field(default=24, ge=1)
    max_new_tokens: int = Field(default=256, ge=1, description="per model turn")
    max_episode_tokens: int = Field(
        default=2048, ge=64, description="model + environment tokens after the first prompt"
    )
    max_context_tokens: int = Field(default=32768, ge=256, description="paper: 32k context")
    max_response_chars: int = Field(default=4000, ge=100, description="tool observations truncated here (paper: 4,000)")
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    observation_role: str = Field(default="tool", description="chat role of observation turns ('tool' or 'user')")
    user_template: str = "Task: {task}"
    ptc_servers: list[str] | None = Field(
        default=None, description="servers listed in the PTC prompt (None = the task's, else all)"
    )


@dataclass
class _Episode:
    task: Task
    traj: Trajectory
    env: EpisodeEnv
    ids: list[int]
    sampled_text: str = ""
    tool_calls: int = 0
    done: bool = False
    finish: str = ""
    followups: list[str] = field(default_factory=list)  # user messages still to deliver


class Agent:
    """The native agent. Reusable: call :meth:`run` with batches of tasks."""

    def __init__(
        self,
        policy: TokenPolicy | ChatPolicy,
        toolspace: Toolspace,
        config: AgentConfig | None = None,
        **overrides: Any,
    ) -> None:
        from atlas_plugins.plugins import get_executor, get_loading_policy

        self.policy = policy
        self.toolspace = toolspace
        self.config = (config or AgentConfig()).model_copy(update=overrides)
        self.loading = get_loading_policy(self.config.loading, **self.config.loading_options)
        self.executor = (
            get_executor(self.config.executor, **self.config.executor_options) if self.config.executor else None
        )
        tokenizer: TokenizerLike | None = getattr(policy, "tokenizer", None)
        self.tokenizer = tokenizer
        #: True for a chat-API policy (no tokenizer): episodes go through ``generate_chat``.
        self.chat_api = tokenizer is None
        if tokenizer is None:
            if not callable(getattr(policy, "generate_chat", None)):
                raise TypeError(
                    f"policy {policy!r} has neither a tokenizer (token interface) nor generate_chat (chat API)"
                )
            return
        #: The token interface's tokenizer (only a token-interface agent has one).
        self._tokenizer: TokenizerLike = tokenizer
        self.template: TurnTemplate = probe_template(tokenizer, self.config.observation_role)
        # Multi-turn tasks (``task.metadata["followups"]``) get their later user messages as user turns.
        self.user_template: TurnTemplate = (
            self.template if self.config.observation_role == "user" else probe_template(tokenizer, "user")
        )

    # -- episode setup -----------------------------------------------------------------------

    @property
    def _tokens(self) -> TokenPolicy:
        """The policy as the token interface (read each time: callers may swap ``self.policy``)."""
        return cast("TokenPolicy", self.policy)

    def _start(self, task: Task, episode_id: str) -> _Episode:
        env = EpisodeEnv(
            self.toolspace,
            task,
            loading=self.loading,
            executor=self.executor,
            episode_id=episode_id,
            max_response_chars=self.config.max_response_chars,
            ptc_servers=self.config.ptc_servers,
            call_format=EXPECTED_FORMAT,
        )
        messages = [
            {"role": "system", "content": env.system_text()},
            {"role": "user", "content": self.config.user_template.format(task=task.prompt)},
        ]
        prompt_ids = list(self._tokens.apply_chat_template(messages, add_generation_prompt=True))
        traj = Trajectory(
            task_id=task.id,
            task=task.model_dump(),
            messages=messages,
            prompt_ids=prompt_ids,
            initial_context_tokens=len(prompt_ids),
            context_tokens=len(prompt_ids),
            metadata={
                "episode_id": episode_id,
                "loading": self.config.loading,
                "executor": self.config.executor,
                "policy": getattr(self.policy, "name", type(self.policy).__name__),
            },
        )
        followups = task.metadata.get("followups") or []
        if followups:
            traj.metadata["user_turn_at"] = [0]
            traj.metadata["answers"] = []
        return _Episode(task=task, traj=traj, env=env, ids=list(prompt_ids), followups=[str(f) for f in followups])

    def _observe(self, ep: _Episode, content: str, *, role: str | None = None) -> None:
        role = role or self.config.observation_role
        template = self.user_template if role == "user" and role != self.config.observation_role else self.template
        # The content is tool / sandbox / server output: its special-token strings must not become
        # control tokens (a forged turn), so they are defused before the template's text joins it.
        content = defuse(content, self._tokenizer)
        text = template.observation_text(content, sampled_text=ep.sampled_text)
        ids = encode(self._tokenizer, text)
        ep.traj.completion_ids.extend(ids)
        ep.traj.env_mask.extend([0] * len(ids))
        ep.traj.logprobs.extend([0.0] * len(ids))
        ep.ids.extend(ids)
        ep.traj.messages.append({"role": role, "content": content})

    def _finish_user_turn(self, ep: _Episode, answer: str, finish: str) -> None:
        """The model answered the current user message: deliver the next one, or end."""
        traj = ep.traj
        traj.final_answer = answer
        if "answers" in traj.metadata:
            traj.metadata["answers"].append(answer)
        if ep.followups:
            traj.metadata["user_turn_at"].append(traj.turns)
            self._observe(ep, self.config.user_template.format(task=ep.followups.pop(0)), role="user")
            return
        ep.done, ep.finish = True, finish

    def _step(self, ep: _Episode, gen: Any) -> None:
        cfg, traj = self.config, ep.traj
        traj.completion_ids.extend(gen.completion_ids)
        traj.env_mask.extend([1] * len(gen.completion_ids))
        traj.logprobs.extend(gen.logprobs)
        ep.ids.extend(gen.completion_ids)
        ep.sampled_text = gen.text
        traj.turns += 1
        eos = self._tokenizer.eos_token or ""
        content = gen.text[: -len(eos)] if eos and gen.text.endswith(eos) else gen.text
        traj.messages.append({"role": "assistant", "content": content})
        parsed = parse_assistant(content)

        if parsed.answer is not None:
            self._finish_user_turn(ep, parsed.answer.strip(), "answer")
            return
        if not parsed.tool_calls:
            if parsed.errors:
                traj.parse_failures += 1
                self._observe(ep, "Error: " + " ".join(e.message for e in parsed.errors))
            elif gen.finish_reason == "length":
                traj.parse_failures += 1
                self._observe(
                    ep,
                    f"Error: your turn was cut off. Call one tool with {EXPECTED_FORMAT}, or finish with <answer>...</answer>.",
                )
            else:  # a plain reply: the model is done talking
                self._finish_user_turn(ep, (parsed.content or content).strip(), "reply")
                return
        else:
            call = parsed.tool_calls[0]  # generation stops after the first call
            if parsed.errors:
                traj.parse_failures += 1
            if ep.tool_calls >= cfg.max_tool_calls:
                self._observe(
                    ep,
                    f"Error: the limit of {cfg.max_tool_calls} tool calls is reached. Give your final answer now in <answer>...</answer>.",
                )
                ep.done, ep.finish = True, "tool_limit"
                return
            ep.tool_calls += 1
            obs = ep.env.act(call.name, call.arguments)
            traj.tool_calls += obs.records(
                turn=traj.turns, name=call.name, arguments=call.arguments, limit=cfg.max_response_chars
            )
            if not obs.ok:
                traj.tool_errors += 1
            self._observe(ep, obs.text)
        if len(traj.completion_ids) >= cfg.max_episode_tokens:
            ep.done, ep.finish = True, "episode_tokens"
        elif len(ep.ids) >= cfg.max_context_tokens:
            ep.done, ep.finish = True, "context"
        elif traj.turns >= cfg.max_turns:
            ep.done, ep.finish = True, "turns"

    # -- the loop ----------------------------------------------------------------------------
    def run(
        self, tasks: Sequence[Task | dict[str, Any]], *, seed: int | None = None, progress: Any = None
    ) -> list[Trajectory]:
        """Play one episode per task (repeat a task to get a GRPO group). Order is kept."""
        batch = [t if isinstance(t, Task) else Task.model_validate(t) for t in tasks]
        if self.chat_api:
            from atlas_plugins.agent.chat_loop import run_chat_episodes

            return run_chat_episodes(self, batch, seed=seed, progress=progress)
        episodes = [self._start(t, f"{t.id}-{uuid.uuid4().hex[:10]}") for t in batch]
        cfg = self.config
        for ep in episodes:
            # An eager prompt over a large tool space may not fit at all: the episode ends
            # before the first turn (a failure the evaluation reports, not a crash).
            if len(ep.ids) >= cfg.max_context_tokens:
                ep.done, ep.finish = True, "context_overflow"
        try:
            turn = 0
            while True:
                active = [ep for ep in episodes if not ep.done]
                if not active:
                    break
                budgets = [
                    max(
                        1,
                        min(
                            cfg.max_new_tokens,
                            cfg.max_episode_tokens - len(ep.traj.completion_ids),
                            cfg.max_context_tokens - len(ep.ids),
                        ),
                    )
                    for ep in active
                ]
                gens = self._tokens.generate(
                    [ep.ids for ep in active],
                    max_new_tokens=budgets,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    stop=STOP_STRINGS,
                    seed=None if seed is None else seed + turn,
                )
                if len(gens) != len(active):
                    # A policy plugin that drops rows would leave those episodes waiting forever.
                    raise AtlasError(
                        f"policy {type(self.policy).__name__}.generate returned {len(gens)} generations "
                        f"for {len(active)} prompts"
                    )
                for ep, gen in zip(active, gens, strict=True):
                    self._step(ep, gen)
                    ep.traj.context_tokens = max(ep.traj.context_tokens, len(ep.ids))
                turn += 1
                if progress is not None:
                    progress(sum(ep.done for ep in episodes), len(episodes))
        finally:
            for ep in episodes:
                ep.env.close()
        return finished_trajectories(episodes)


def finished_trajectories(episodes: Sequence[Any]) -> list[Trajectory]:
    """Each played episode's trajectory, with its loaded-schema log and how it finished (the
    native loop's and the chat-API loop's episodes alike)."""
    for ep in episodes:
        ep.traj.loaded_tools_log = ep.env.log
        ep.traj.metadata["finish"] = ep.finish or "unfinished"
    return [ep.traj for ep in episodes]


def run_episodes(
    policy: TokenPolicy | ChatPolicy,
    toolspace: Toolspace,
    tasks: Sequence[Task | dict[str, Any]],
    config: AgentConfig | None = None,
    *,
    seed: int | None = None,
    **overrides: Any,
) -> list[Trajectory]:
    """One-shot helper: build an :class:`Agent` and play one episode per task."""
    return Agent(policy, toolspace, config, **overrides).run(tasks, seed=seed)
