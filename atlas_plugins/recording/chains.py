"""Server-side attribution of chat requests to conversations ("chains") and rollouts.

A request whose messages continue an earlier reply joins that reply's chain
(:class:`ChainTracker` finds it by the messages, with no help from the client); anything else
opens a new chain. A chain's *rollout* is the explicit tag of its first request, else whatever
:attr:`ChainTracker.resolver` answers for the new root, else ``None``. Identical conversations
are told apart by their replies: two episodes of a GRPO group send the same first request, but
each continuation carries its own episode's earlier reply; when two chains are identical so far,
a continuation takes a chain that has not been continued yet (a retry of an already-continued
call forks a new chain of the same rollout). Used by :class:`~atlas_plugins.serving.server.PolicyServer`.

Messages are compared by :func:`~atlas_plugins.wire.messages.message_key` (re-exported here).
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from atlas_plugins.wire.messages import message_key

__all__ = ["Chain", "ChainTracker", "chain_hashes", "message_key"]


class Chain(BaseModel):
    """A linear conversation with the server: the requests that continue each other's replies."""

    id: str
    rollout: str | None = None
    #: The chain this one forked from (a retry of an already-continued call, or choice k > 0 of ``n``).
    parent: str | None = None
    created: float = 0.0
    #: ``(record index, choice index)`` of every call of the chain, in order.
    calls: list[tuple[int, int]] = Field(default_factory=list)


def chain_hashes(tools: list[dict[str, Any]] | None, messages: list[dict[str, Any]]) -> list[str]:
    """``h[k]`` identifies ``(tools, messages[:k])``; incremental, so a lookup is linear in the history."""
    h = hashlib.sha1(json.dumps(tools, sort_keys=True, default=str).encode() if tools else b"").hexdigest()
    out = [h]
    for m in messages:
        h = hashlib.sha1((h + "\x1e" + message_key(m)).encode()).hexdigest()
        out.append(h)
    return out


class ChainTracker:
    """Server-side attribution of requests to chains and rollouts (see the module docs).

    ``resolver(messages) -> rollout | None`` is asked once for every new untagged chain, under
    the tracker's lock (keep it quick). Thread-safe.
    """

    def __init__(self, *, max_nodes: int = 100_000) -> None:
        self.chains: dict[str, Chain] = {}
        self.resolver: Callable[[list[dict[str, Any]]], str | None] | None = None
        # hash of (tools, messages + reply) -> [[chain id, continued?], ...]
        self._nodes: collections.OrderedDict[str, list[list[Any]]] = collections.OrderedDict()
        self._max_nodes = max_nodes
        self._lock = threading.Lock()
        self._count = 0

    def _new_chain(self, rollout: str | None, parent: str | None) -> Chain:
        self._count += 1
        chain = Chain(
            id=f"chain-{self._count}-{uuid.uuid4().hex[:6]}", rollout=rollout, parent=parent, created=time.time()
        )
        self.chains[chain.id] = chain
        return chain

    def open(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, rollout: str | None) -> Chain:
        """The chain a new request belongs to (found by its history, else a new one)."""
        hashes = chain_hashes(tools, messages)
        with self._lock:
            for cut in range(len(messages) - 1, 0, -1):
                nodes = self._nodes.get(hashes[cut])
                if not nodes:
                    continue
                live = [
                    n
                    for n in nodes
                    if n[0] in self.chains and (rollout is None or self.chains[n[0]].rollout == rollout)
                ]
                if not live:
                    continue
                fresh = [n for n in live if not n[1]]
                if fresh:
                    fresh[0][1] = True
                    return self.chains[fresh[0][0]]
                # Every identical reply was already continued: a retry or a branch of the conversation.
                base = self.chains[live[0][0]]
                return self._new_chain(base.rollout, base.id)
            if rollout is None and self.resolver is not None:
                rollout = self.resolver(messages)
            return self._new_chain(rollout, None)

    def fork(self, chain: Chain) -> Chain:
        with self._lock:
            return self._new_chain(chain.rollout, chain.id)

    def close(
        self,
        chain: Chain,
        record_index: int,
        choice: int,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        reply: dict[str, Any],
    ) -> None:
        """Register a served reply, so the request that continues it joins ``chain``."""
        key = chain_hashes(tools, [*messages, {**reply, "role": "assistant"}])[-1]
        with self._lock:
            chain.calls.append((record_index, choice))
            self._nodes.setdefault(key, []).append([chain.id, False])
            self._nodes.move_to_end(key)
            while len(self._nodes) > self._max_nodes:
                self._nodes.popitem(last=False)

    def pop_rollout(self, rollout: str) -> list[Chain]:
        """Remove and return the chains of ``rollout`` (oldest first)."""
        with self._lock:
            found = [c for c in self.chains.values() if c.rollout == rollout]
            for c in found:
                del self.chains[c.id]
        return sorted(found, key=lambda c: c.created)

    def pop_unattributed(self, since: float = 0.0) -> list[Chain]:
        """Remove and return the chains no rollout was found for, created at or after ``since``."""
        with self._lock:
            found = [c for c in self.chains.values() if c.rollout is None and c.created >= since]
            for c in found:
                del self.chains[c.id]
        return sorted(found, key=lambda c: c.created)
