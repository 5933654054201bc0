"""When a front end's connection reads from its client: the one rule both own front ends (http_lean,
grpc_native) keep for it.

A connection stops reading while something holds its requests back: requests left for the event loop's
next turn (a burst is answered at most so many per callback), answers the client does not read
(pause_writing), or whatever else the front end adds (`_reading_held`). Reading again is then the only
way the client's next bytes arrive, so requests cannot pile up in memory behind the ones waiting.
"""

from __future__ import annotations

import asyncio


class ReadGatedProtocol(asyncio.Protocol):
    """An asyncio protocol whose reading follows `_reading_held()`; call `_sync_reading` after changing
    anything it reads."""

    _transport: asyncio.Transport | None = None
    _closing = False  # the connection is being closed: its reading no longer matters

    def __init__(self) -> None:
        self._deferred = False  # requests left for the loop's next turn
        self._write_paused = False  # the client is not reading its answers
        self._reading_paused = False  # as last asked of the transport (it starts reading)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._sync_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._sync_reading()

    def _reading_held(self) -> bool:
        """Whether something holds the client's requests back (a front end adds its own reasons)."""
        return self._deferred or self._write_paused

    def _sync_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        held = self._reading_held()
        if held == self._reading_paused:
            return
        self._reading_paused = held
        if held:
            transport.pause_reading()
        else:
            transport.resume_reading()
