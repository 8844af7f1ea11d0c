"""The customer's answer asked for at the trainee's pause, before the turn is confirmed.

When neither the words nor smart-turn end the turn at a pause (the turn waits for more speech or
the maximum silence) and the words do not dangle ("made for"), the LLM is asked already. A
commit that sends the very same conversation replays what it streamed, so the model's first
token overlaps the wait for the turn; a trainee who talks on cancels it (a wasted call, counted:
with a paid API it costs).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Coroutine

from coach.contracts import ChatMessage, ProviderError

_DONE = None


class LlmPrefetch:
    """One streaming LLM request started early; its deltas are kept until a reply takes them."""

    def __init__(self, llm: Any, messages: list[ChatMessage], language: str,
                 spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]) -> None:
        self.messages = list(messages)
        self.taken = False
        self._items: asyncio.Queue[str | ProviderError | None] = asyncio.Queue()
        self.task = spawn(self._pump(llm, language), "llm-prefetch")

    async def _pump(self, llm: Any, language: str) -> None:
        try:
            async for delta in llm.stream_reply(self.messages, language):
                self._items.put_nowait(delta)
        except ProviderError as exc:
            self._items.put_nowait(exc)  # the reply that takes it fails as a live call would
            return
        except Exception as exc:  # a provider bug: the taker must not wait forever
            self._items.put_nowait(ProviderError("llm", f"internal: {exc}"))
            raise
        self._items.put_nowait(_DONE)

    async def replay(self) -> AsyncIterator[str]:
        """What the request streamed so far, then the rest as it comes (once)."""
        self.taken = True
        try:
            while (item := await self._items.get()) is not _DONE:
                if isinstance(item, ProviderError):
                    raise item
                yield item
        finally:
            self.task.cancel()  # the reply stopped reading (barge-in, deadline): stop the request

    def cancel(self) -> None:
        self.task.cancel()


class ReplyLLM:
    """The LLM for one reply: answers from ``prefetch`` when asked the same conversation it was."""

    def __init__(self, llm: Any, prefetch: LlmPrefetch | None) -> None:
        self._llm = llm
        self._prefetch = prefetch

    def stream_reply(self, messages: list[ChatMessage], language: str) -> AsyncIterator[str]:
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None and prefetch.messages == messages:
            return prefetch.replay()
        if prefetch is not None:
            prefetch.cancel()
        return self._llm.stream_reply(messages, language)
