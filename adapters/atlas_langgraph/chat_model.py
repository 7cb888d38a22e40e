"""A LangChain chat model backed by an atlas policy that records token-faithful turns.

:class:`AtlasChatModel` is an ordinary ``BaseChatModel``: ``bind_tools``, tool calls,
``invoke``/``ainvoke``/``stream``/``batch``, ``with_retry`` and ``with_structured_output`` work
as with any provider, so an existing LangGraph graph (``create_react_agent`` or a hand-written
``StateGraph``) runs on it unchanged. What it adds:

* **generation** goes through the policy's token interface: messages are rendered to prompt ids
  by a :class:`~atlas_plugins.recording.recorder.ChatRenderer` (append-only across the turns of one
  conversation, so no sampled token is ever re-tokenized), the policy samples completion ids
  with their logprobs, and the text is parsed with the native loop's tolerant parser
  (:func:`~atlas_plugins.agent.parsing.parse_assistant`) into content and ``tool_calls``;
* **recording**: every generation appends one :class:`~atlas_plugins.recording.recorder.LLMCall`
  to the *current recording* — the one whose episode id is the run's
  ``config["configurable"]["atlas_episode"]``, else the one of the enclosing
  :func:`recording_scope`. Concurrent runs (threads, ``graph.batch``, asyncio tasks) therefore
  record apart. With no recording active nothing is recorded and the model is a plain chat model.

A policy without a token interface — :class:`~atlas_plugins.policy.openai_policy.OpenAIPolicy`
on any OpenAI-compatible server — is called through its chat API instead: the bound tools go as
the request's ``tools``, native ``tool_calls`` of the reply become the message's tool calls
(else the text is parsed as above). Such calls are recorded without token ids (evaluation only).

The policy is a plain attribute: assigning ``model.policy = other`` (what
:class:`~atlas_plugins.adapters.atlas_langgraph.runner.LangGraphRunner` does with the trainer's
policy) makes every graph that holds this model answer with the other policy from the next call.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from atlas_langgraph.names import resolve_graph_name
from atlas_langgraph.tools import EPISODE_CONFIG_KEY, lc_name_for
from atlas_plugins.recording.recorder import ChatRenderer, LLMCall
from atlas_plugins.wire.messages import arguments_json, content_text
from atlas_plugins.wire.toolcall import STOP_STRINGS, parse_assistant

__all__ = [
    "AtlasChatModel",
    "Recording",
    "current_recording",
    "recording_scope",
    "to_openai_messages",
]


# ----------------------------------------------------------------------------------- recording
class Recording:
    """The model calls of one run, in order (thread-safe), plus the run's sampling seed stream."""

    def __init__(self, episode_id: str | None = None, seed: int | None = None) -> None:
        self.episode_id = episode_id
        self.calls: list[LLMCall] = []
        #: ``id(model) -> repr`` of every AtlasChatModel that recorded here: a runner checks that
        #: the graph called *its* model (another instance samples with a policy nobody trains).
        self.models: dict[int, str] = {}
        #: ``id(model) -> id(model.policy)`` when it recorded: another instance on the same policy
        #: (a node with its own temperature or stops) samples from the policy being trained.
        self.model_policies: dict[int, int] = {}
        #: ``time.monotonic()`` after which model calls raise ``TimeoutError`` (a node that loops
        #: on the model in Python is stopped at its next call; the recursion limit cannot see it).
        self.deadline: float | None = None
        self._seed = seed
        self._lock = threading.Lock()

    def add(self, call: LLMCall, model: Any = None) -> None:
        with self._lock:
            self.calls.append(call)
            if model is not None:
                self.model_policies.setdefault(id(model), id(getattr(model, "policy", None)))
                self.models.setdefault(
                    id(model),
                    f"{type(model).__name__}(policy={getattr(model.policy, 'name', None)!r}) at {id(model):#x}",
                )

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError(
                f"episode {self.episode_id!r} ran past its time budget ({len(self.calls)} model calls made)"
            )

    def next_seed(self) -> int | None:
        """Seeds ``seed, seed+1, ...`` for successive calls (None when the run is unseeded)."""
        with self._lock:
            if self._seed is None:
                return None
            self._seed += 1
            return self._seed - 1


_RECORDING: ContextVar[Recording | None] = ContextVar("atlas_langgraph_recording", default=None)
_BY_EPISODE: dict[str, Recording] = {}
_BY_EPISODE_LOCK = threading.Lock()


@contextlib.contextmanager
def recording_scope(episode_id: str | None = None, *, seed: int | None = None) -> Iterator[Recording]:
    """Record the model calls made inside the block (and by runs whose config names ``episode_id``)."""
    rec = Recording(episode_id, seed)
    token = _RECORDING.set(rec)
    if episode_id:
        with _BY_EPISODE_LOCK:
            if episode_id in _BY_EPISODE:
                _RECORDING.reset(token)
                raise ValueError(f"episode id {episode_id!r} is already being recorded; episode ids must be unique")
            _BY_EPISODE[episode_id] = rec
    try:
        yield rec
    finally:
        if episode_id:
            with _BY_EPISODE_LOCK:
                _BY_EPISODE.pop(episode_id, None)
        _RECORDING.reset(token)


def current_recording(metadata: dict[str, Any] | None = None) -> Recording | None:
    """The recording a model call belongs to: by the run's episode id, else the ambient scope's."""
    episode = (metadata or {}).get(EPISODE_CONFIG_KEY)
    if not episode:
        try:
            from langchain_core.runnables.config import var_child_runnable_config

            config = var_child_runnable_config.get() or {}
            episode = (config.get("configurable") or {}).get(EPISODE_CONFIG_KEY)
        except (ImportError, LookupError):  # pragma: no cover - older langchain_core
            episode = None
    if episode:
        with _BY_EPISODE_LOCK:
            rec = _BY_EPISODE.get(str(episode))
        if rec is not None:
            return rec
    return _RECORDING.get()


# ---------------------------------------------------------------------------- message mapping
def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages -> OpenAI-style chat dicts (the form the policy's chat template takes).

    The same function converts the model's own reply for the renderer's memory, so a reply
    that comes back in the next call's history is recognised and extended append-only.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": content_text(m.content)})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": content_text(m.content)})
        elif isinstance(m, AIMessage):
            msg: dict[str, Any] = {"role": "assistant", "content": content_text(m.content)}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": tc.get("id") or "",
                        "type": "function",
                        "function": {"name": tc["name"], "arguments": arguments_json(tc.get("args") or {})},
                    }
                    for tc in m.tool_calls
                ]
            out.append(msg)
        elif isinstance(m, ToolMessage):
            out.append(
                {
                    "role": "tool",
                    "content": content_text(m.content),
                    "tool_call_id": m.tool_call_id,
                    **({"name": m.name} if m.name else {}),
                }
            )
        elif isinstance(m, ChatMessage):
            out.append({"role": m.role, "content": content_text(m.content)})
        else:
            raise ValueError(f"AtlasChatModel cannot render a message of type {type(m).__name__!r}: {m!r:.200}")
    return out


_CALL_IDS = itertools.count(1)


# ------------------------------------------------------------------------------------- model
class AtlasChatModel(BaseChatModel):
    """A LangChain chat model over an atlas policy, recording token-faithful turns.

    Args:
        policy: a token-level policy (``tokenizer``, ``apply_chat_template``, ``generate``):
            :class:`~atlas_plugins.policy.transformers_policy.TransformersPolicy`, or a
            :class:`~atlas_plugins.policy.batching.BatchedPolicy` around one. Swappable.
        temperature, top_p, max_new_tokens: sampling settings of every call.
        stop: stop strings (default: the native loop's ``</tool_call>`` and ``</answer>``); a
            call's own ``stop=`` adds to them.

    Example::

        from atlas_plugins.policy.transformers_policy import TransformersPolicy
        from langgraph.prebuilt import create_react_agent

        model = AtlasChatModel(policy=TransformersPolicy())
        graph = create_react_agent(model, tools)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    policy: Any = Field(exclude=True)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    stop: list[str] | None = None
    #: Seed for calls made outside any recording (None: unseeded).
    seed: int | None = None

    _renderer: ChatRenderer | None = PrivateAttr(default=None)
    _renderer_policy: Any = PrivateAttr(default=None)
    _renderer_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "atlas"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "policy": getattr(self.policy, "name", type(self.policy).__name__),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    # -- tools -----------------------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, pydantic models, functions or OpenAI tool dicts).

        ``tool_choice`` is accepted for compatibility; a small model is not forced to call a
        tool (a reply without one is returned as is, and ``with_structured_output`` reports it).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """LangChain's tool-calling structured output, with a clear error when the reply has no valid call.

        (LangChain's own parser returns ``None`` for a reply without a tool call, which would
        hide the failure; the model turn is recorded either way.)
        """
        chain = super().with_structured_output(schema, include_raw=True, **kwargs)
        if include_raw:
            return chain
        name = convert_to_openai_tool(schema)["function"]["name"]

        def _parsed_or_raise(out: dict[str, Any]) -> Any:
            if out.get("parsed") is not None:
                return out["parsed"]
            raw = out.get("raw")
            reply = content_text(getattr(raw, "content", "")) if raw is not None else ""
            calls = [tc.get("name") for tc in (getattr(raw, "tool_calls", None) or [])]
            why = out.get("parsing_error") or (f"the reply called {calls}" if calls else "the reply had no tool call")
            raise OutputParserException(
                f"AtlasChatModel: no valid structured output for schema {name!r}: {why}. The model replied: {reply[:300]!r}",
                llm_output=reply,
            )

        return chain | RunnableLambda(_parsed_or_raise, name="atlas_structured_output")

    # -- generation --------------------------------------------------------------------------
    def renderer(self) -> ChatRenderer:
        """The prompt renderer for the current policy (rebuilt when the policy object changes)."""
        with self._renderer_lock:
            if self._renderer is None or self._renderer_policy is not self.policy:
                self._renderer = ChatRenderer(self.policy)
                self._renderer_policy = self.policy
            return self._renderer

    def _sample(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> AIMessage:
        """One generation: render, sample, parse, remember, record. Returns the reply message."""
        if self.policy is None:
            raise ValueError("AtlasChatModel.policy is None; give it a policy (e.g. TransformersPolicy())")
        tools: list[dict[str, Any]] | None = kwargs.get("tools") or None
        chat = to_openai_messages(messages)
        if getattr(self.policy, "tokenizer", None) is None:
            return self._sample_chat(chat, tools, stop, run_manager)
        renderer = self.renderer()
        prompt_ids, continued = renderer.prompt_ids(chat, tools)
        stops = list(self.stop if self.stop is not None else _default_stops())
        stops += [s for s in (stop or []) if s not in stops]
        recording = current_recording(getattr(run_manager, "metadata", None))
        if recording is not None:
            recording.check_deadline()
        seed = recording.next_seed() if recording is not None else self.seed
        gen = self.policy.generate(
            [prompt_ids],
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stops or None,
            seed=seed,
        )[0]
        reply = self._reply(gen.text, tools)
        reply.response_metadata.update(
            {
                "finish_reason": gen.finish_reason,
                "model_name": getattr(self.policy, "name", "atlas"),
                "continued": continued,
            }
        )
        reply.usage_metadata = {
            "input_tokens": len(prompt_ids),
            "output_tokens": len(gen.completion_ids),
            "total_tokens": len(prompt_ids) + len(gen.completion_ids),
        }
        reply_dict = to_openai_messages([reply])[0]
        renderer.remember(chat, tools, prompt_ids, list(gen.completion_ids), gen.text, reply_dict)
        if recording is not None:
            recording.add(
                LLMCall(
                    messages=chat,
                    tools=tools,
                    prompt_ids=list(prompt_ids),
                    completion_ids=list(gen.completion_ids),
                    logprobs=list(gen.logprobs),
                    text=gen.text,
                    finish_reason=gen.finish_reason,
                    continued=continued,
                ),
                model=self,
            )
        return reply

    def _sample_chat(
        self,
        chat: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
    ) -> AIMessage:
        """One call of a chat-API policy (``generate_chat``): the API's own tool calling."""
        if not callable(getattr(self.policy, "generate_chat", None)):
            raise TypeError(f"AtlasChatModel.policy {self.policy!r} has neither a tokenizer nor generate_chat")
        stops = list(self.stop if self.stop is not None else _default_stops())
        stops += [s for s in (stop or []) if s not in stops]
        recording = current_recording(getattr(run_manager, "metadata", None))
        if recording is not None:
            recording.check_deadline()
        seed = recording.next_seed() if recording is not None else self.seed
        gen = self.policy.generate_chat(
            chat,
            tools=tools,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stops or None,
            seed=seed,
        )
        if gen.tool_calls:
            bound = [t["function"]["name"] for t in tools or [] if "function" in t]
            calls = [
                {
                    "name": resolve_graph_name(str(c["name"]), bound) or str(c["name"]),
                    "args": c["arguments"] if isinstance(c.get("arguments"), dict) else {},
                    "id": f"call_{next(_CALL_IDS)}",
                    "type": "tool_call",
                }
                for c in gen.tool_calls
                if c.get("name")
            ]
            reply = AIMessage(content=gen.text or "", tool_calls=calls)
        else:
            from atlas_plugins.agent.chat_loop import close_tags

            # The server drops the stop string that ended the reply; the parser wants the closing tag.
            reply = self._reply(close_tags(gen.text or ""), tools)
        usage = gen.usage or {}
        reply.response_metadata.update(
            {"finish_reason": gen.finish_reason, "model_name": getattr(self.policy, "name", "atlas")}
        )
        reply.usage_metadata = {
            "input_tokens": int(usage.get("prompt_tokens", 0)),
            "output_tokens": int(usage.get("completion_tokens", 0)),
            "total_tokens": int(usage.get("total_tokens", 0)),
        }
        if recording is not None:  # no token ids from an API: the call is kept for counting, not training
            recording.add(
                LLMCall(
                    messages=chat,
                    tools=tools,
                    prompt_ids=[],
                    completion_ids=[],
                    logprobs=[],
                    text=gen.text or "",
                    finish_reason=gen.finish_reason,
                ),
                model=self,
            )
        return reply

    @staticmethod
    def _reply(text: str, tools: list[dict[str, Any]] | None) -> AIMessage:
        """Parse sampled text into an AIMessage: the answer (or leftover text) and tool calls."""
        parsed = parse_assistant(text)
        bound = {t["function"]["name"] for t in tools or [] if "function" in t}
        tool_calls = []
        for call in parsed.tool_calls:
            name = call.name
            if name not in bound:
                # The native format names tools "server:tool"; the graph's tools are named as their
                # source names them ("server__tool", "get_current_time", ...): one resolution rule.
                name = resolve_graph_name(name, bound) or lc_name_for(name) or name
            tool_calls.append(
                {"name": name, "args": dict(call.arguments), "id": f"call_{next(_CALL_IDS)}", "type": "tool_call"}
            )
        if parsed.answer is not None:
            content = parsed.answer.strip()
        elif parsed.content.strip() or not tool_calls:
            content = parsed.content.strip() if parsed.content.strip() else ("" if tool_calls else text.strip())
        else:
            content = ""
        extra: dict[str, Any] = {}
        if parsed.thought:
            extra["reasoning_content"] = parsed.thought
        if parsed.errors:
            extra["atlas_parse_errors"] = [e.message for e in parsed.errors]
        return AIMessage(content=content, tool_calls=tool_calls, additional_kwargs=extra)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._sample(messages, stop, run_manager, kwargs)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Streams the whole reply as one chunk (the turn is sampled, and recorded, exactly once)."""
        reply = self._sample(messages, stop, run_manager, kwargs)
        chunk = AIMessageChunk(
            content=reply.content,
            additional_kwargs=reply.additional_kwargs,
            response_metadata=reply.response_metadata,
            usage_metadata=reply.usage_metadata,
            tool_call_chunks=[
                {"name": tc["name"], "args": arguments_json(tc["args"]), "id": tc["id"], "index": i}
                for i, tc in enumerate(reply.tool_calls)
            ],
            chunk_position="last",
        )
        if run_manager is not None:
            run_manager.on_llm_new_token(content_text(reply.content), chunk=ChatGenerationChunk(message=chunk))
        yield ChatGenerationChunk(message=chunk)


def _default_stops() -> list[str]:
    return list(STOP_STRINGS)
