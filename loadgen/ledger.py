"""Which trace request went out as send number k, and what became of it: the verifier's expectations.

Compact on purpose: a few bytes per request (not per span), indexed by k. With the pool's span keys
this is enough to rebuild the exact set of acknowledged (trace_id, span_id) pairs without ever
holding it in memory.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

NOT_SENT, SENT, ACKED = 0, 1, 2  # SENT: sent but never acknowledged (refused, failed or unanswered)


@dataclass(slots=True)
class Ledger:
    template: array = field(default_factory=lambda: array("I", [0]))  # k -> pool index
    state: bytearray = field(default_factory=lambda: bytearray(1))
    first_sent: array = field(default_factory=lambda: array("d", [0.0]))  # k -> wall time of 1st attempt
    rejected: dict[int, int] = field(default_factory=dict)  # k -> partial_success rejections

    def next(self, template: int) -> int:
        """Reserve the next send number for a body of pool entry `template`."""
        self.template.append(template)
        self.state.append(NOT_SENT)
        self.first_sent.append(0.0)
        return len(self.state) - 1

    def sent(self, k: int, wall: float) -> None:
        self.state[k] = SENT
        self.first_sent[k] = wall

    def acked(self, k: int, rejected: int) -> None:
        self.state[k] = ACKED
        if rejected:
            self.rejected[k] = rejected

    def __len__(self) -> int:
        return len(self.state) - 1
