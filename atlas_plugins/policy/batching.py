"""Merge concurrent generation calls from several threads into one batched call.

The native agent generates a whole GRPO group in one batched call because it steps all
episodes in lock step. Adapted agents (LangGraph graphs, DSPy programs, OpenAI-API clients of
the policy server) run one episode per thread and each calls the model on its own; without
help a group of 4 would be generated one sequence at a time. :class:`BatchedPolicy` wraps a
policy so that calls arriving close together are generated together:

* the first caller that finds no batch being assembled becomes the *leader*: it waits until
  every registered episode is waiting for the model (see :meth:`BatchedPolicy.episode`) or
  ``max_wait_ms`` has passed, takes the queued calls with its own sampling settings
  (temperature, top-p), runs one ``generate`` for all their prompts, hands each caller its
  completions, and leads again while calls are queued;
* everyone else waits for their results.

Per-prompt settings (``max_new_tokens``, stop strings) are kept per prompt. A call's ``seed``
cannot be honoured inside a shared batch (which thread arrives first varies from run to run),
so batched sampling is not bit-reproducible; a batch uses the smallest seed among its calls.
``max_wait_ms=0`` with no registered episodes means "no waiting": calls still merge when they
happen to queue behind a running batch.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from atlas_plugins.policy.base import Generation, Policy, per_prompt, per_prompt_stops


@dataclass
class _Call:
    prompts: list[list[int]]
    max_new_tokens: list[int]
    stop: list[list[str] | None]
    key: tuple[float, float]
    seed: int | None
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Generation] | None = None
    error: BaseException | None = None


class BatchedPolicy:
    """A thread-safe wrapper that batches concurrent ``generate`` calls (see module docs).

    Every other attribute (``tokenizer``, ``model``, ``apply_chat_template``, ``name`` …) is the
    wrapped policy's.
    """

    def __init__(self, policy: Policy, *, max_wait_ms: float = 50.0, max_batch: int = 64) -> None:
        if max_wait_ms < 0 or max_batch < 1:
            raise ValueError(f"max_wait_ms must be >= 0 and max_batch >= 1 (got {max_wait_ms}, {max_batch})")
        self.policy = policy
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._leading = False
        self._episodes = 0
        #: Sizes of the batches run so far (prompts per underlying call), for inspection.
        self.batch_sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    @contextlib.contextmanager
    def episode(self) -> Iterator[None]:
        """Register a running episode, so the leader knows how many callers to wait for."""
        with self._cond:
            self._episodes += 1
        try:
            yield
        finally:
            with self._cond:
                self._episodes -= 1
                self._cond.notify_all()  # a leader may be waiting for this episode's call

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int | Sequence[int] = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] | Sequence[Sequence[str]] | None = None,
        seed: int | None = None,
    ) -> list[Generation]:
        ids = [list(p) for p in prompts]
        n = len(ids)
        mnt = [int(x) for x in per_prompt(max_new_tokens, n, what="max_new_tokens", scalar=int)]
        stops: list[list[str] | None] = [row or None for row in per_prompt_stops(stop, n)]
        call = _Call(ids, mnt, stops, (float(temperature), float(top_p)), seed)
        with self._cond:
            self._queue.append(call)
            self._cond.notify_all()
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    # -- the leader ---------------------------------------------------------------------------
    def _take_batch(self) -> list[_Call]:
        """Wait for the other episodes' calls (bounded), then take one compatible batch."""
        deadline = time.monotonic() + self.max_wait_s
        with self._cond:
            while True:
                waiting = sum(1 for c in self._queue if not c.done.is_set())
                remaining = deadline - time.monotonic()
                if waiting >= max(1, self._episodes) or remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._queue:
                return []
            key = self._queue[0].key
            batch: list[_Call] = []
            rest: list[_Call] = []
            size = 0
            for c in self._queue:
                if not batch or (c.key == key and size + len(c.prompts) <= self.max_batch):
                    batch.append(c)
                    size += len(c.prompts)
                else:
                    rest.append(c)
            self._queue = rest
            return batch

    def _lead(self) -> None:
        while True:
            batch = self._take_batch()
            if batch:
                self._run(batch)
            with self._cond:
                if not self._queue:
                    self._leading = False
                    return

    def _run(self, batch: list[_Call]) -> None:
        prompts = [p for c in batch for p in c.prompts]
        seeds = [c.seed for c in batch if c.seed is not None]
        stops = [s for c in batch for s in c.stop]
        uniform_stop = all(s == stops[0] for s in stops)
        try:
            gens = self.policy.generate(
                prompts,
                max_new_tokens=[m for c in batch for m in c.max_new_tokens],
                temperature=batch[0].key[0],
                top_p=batch[0].key[1],
                stop=stops[0] if uniform_stop else [s or [] for s in stops],
                seed=min(seeds) if seeds else None,
            )
        except Exception as exc:  # noqa: BLE001 - handed to the caller whose call failed (re-raised there)
            if len(batch) > 1:  # one caller's bad input must not fail the others: run each alone
                for c in batch:
                    self._run([c])
                return
            batch[0].error = exc
            batch[0].done.set()
            return
        except BaseException as exc:  # KeyboardInterrupt etc.: every waiting caller gets it, not a hang
            for c in batch:
                c.error = exc
                c.done.set()
            raise
        self.batch_sizes.append(len(prompts))
        i = 0
        for c in batch:
            c.result = gens[i : i + len(c.prompts)]
            i += len(c.prompts)
            c.done.set()
