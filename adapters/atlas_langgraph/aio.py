"""One long-lived event loop, in a thread of its own, for running graphs with ``ainvoke``.

Runners play episodes in worker threads (the batching policy and the proxy's start gate block a
thread while they wait). An episode of an async graph is a coroutine; it is handed to the
process's one :class:`BackgroundLoop` (:func:`run_async`) and the worker waits for its result.
One loop for every episode of every runner, kept for the life of the process, because async
clients in the user's graph belong to the loop they were first used on — ``langchain_openai``
even shares one pooled async HTTP client between all ``ChatOpenAI`` objects of a process — so a
fresh ``asyncio.run`` per episode (or a loop per runner) hands them a closed loop
("Event loop is closed") on the next episode.

The caller's context variables (episode and recording scopes) reach the coroutine: the loop's
task is created in a copy of the calling thread's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["BackgroundLoop", "run_async", "shared_loop"]


class BackgroundLoop:
    """A daemon thread running one event loop; :meth:`run` executes a coroutine on it and waits.

    ``executor_workers`` sizes the loop's default executor, where LangChain runs sync model calls
    and sync tools of an async run: it must hold every concurrent episode's blocked call, or a
    batch of generations would wait for a free thread.
    """

    def __init__(self, *, name: str = "atlas-aio", executor_workers: int = 64) -> None:
        self._name = name
        self._workers = executor_workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                loop.set_default_executor(
                    ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"{self._name}-exec")
                )
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run ``coro`` on the loop (in a copy of the caller's context) and return its result."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop thread (it would wait for itself)")
        ctx = contextvars.copy_context()

        async def in_context() -> Any:
            return await asyncio.create_task(coro, context=ctx)

        future = asyncio.run_coroutine_threadsafe(in_context(), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine's own TimeoutError
                raise
            # Cancel the run on the loop, or a hung episode (a tool awaiting a server that never
            # answers) would keep running there after its worker gave up on it.
            future.cancel()
            raise TimeoutError(f"the run did not finish within {timeout} s (cancelled)") from None

    def close(self) -> None:
        """Stop the loop and its thread (idempotent); a later :meth:`run` starts a new one."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()


_SHARED = BackgroundLoop(name="atlas-aio")


def shared_loop() -> BackgroundLoop:
    """The process's one background loop (started on first use)."""
    return _SHARED


def run_async(coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
    """Run ``coro`` on the process's background loop from a worker thread and return its result."""
    return _SHARED.run(coro, timeout)


def checkpointer(graph: Any) -> Any:
    """The graph's checkpointer when it has a usable one (``get_tuple``), else ``None``."""
    saver = getattr(graph, "checkpointer", None)
    return saver if saver is not None and hasattr(saver, "get_tuple") else None


def forget_thread(graph: Any, thread_id: str, *, use_async: bool) -> None:
    """Delete an episode's checkpointer thread (an in-memory saver would keep every episode)."""
    saver = checkpointer(graph)
    if saver is None:
        return
    try:
        if use_async:
            run_async(saver.adelete_thread(thread_id))
        else:
            saver.delete_thread(thread_id)
    except Exception:  # noqa: BLE001 - best effort: a saver without deletion keeps the thread
        pass
