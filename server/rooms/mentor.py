"""Mentor features: tips to the streamer (with delivery latency) and the push-to-talk whisper."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.metrics import Metrics
from server.protocol import ProtocolError, Tip, TipAck
from server.rooms.contracts import ConnRef, Outbox

log = logging.getLogger(__name__)

MAX_PENDING_TIPS = 256  # unacked tips must not grow forever


@dataclass
class PendingTip:
    sent_ns: int
    mentor: ConnRef
    text: str


class TipDesk:
    def __init__(self, room_id: str, outbox: Outbox, metrics: Metrics,
                 log_event: Callable[[dict[str, Any]], None]) -> None:
        self.room_id = room_id
        self.outbox = outbox
        self.metrics = metrics
        self.log_event = log_event
        self._pending: dict[str, PendingTip] = {}

    def send(self, session_id: str | None, mentor: ConnRef, mentor_user: str, streamer: ConnRef,
             msg: Tip) -> dict[str, Any]:
        tip_id = uuid.uuid4().hex[:12]
        now = time.perf_counter_ns()
        self._pending[tip_id] = PendingTip(sent_ns=now, mentor=mentor, text=msg.text)
        if len(self._pending) > MAX_PENDING_TIPS:
            self._pending.pop(next(iter(self._pending)))
        self.outbox.send(streamer, {
            "type": "tip", "tip_id": tip_id, "text": msg.text, "from": mentor_user,
            "server_ns": now, "sent_at_ms": time.time() * 1000.0,
        })
        self.metrics.tips.inc()
        self.log_event({"type": "tip", "session_id": session_id, "t_ns": now, "tip_id": tip_id,
                        "text": msg.text, "from": mentor_user})
        return {"type": "tip_sent", "tip_id": tip_id, "ref": msg.id, "server_ns": now}

    def ack(self, session_id: str | None, msg: TipAck, mentor_present: Callable[[ConnRef], bool]) -> None:
        pending = self._pending.pop(msg.tip_id, None)
        if pending is None:
            raise ProtocolError("unknown_tip", f"no pending tip {msg.tip_id}", msg.id)
        now = time.perf_counter_ns()
        rtt_ms = (now - pending.sent_ns) / 1e6
        # Same-machine clients report their perf_counter_ns receipt time → true one-way delay.
        if msg.received_ns is not None and pending.sent_ns <= msg.received_ns <= now:
            delivery_ms = (msg.received_ns - pending.sent_ns) / 1e6
        else:
            delivery_ms = rtt_ms / 2
        self.metrics.tip_delivery.observe(delivery_ms / 1000)
        log.info("room %s: tip %s delivered in %.1f ms (rtt %.1f ms)", self.room_id, msg.tip_id, delivery_ms, rtt_ms)
        if mentor_present(pending.mentor):
            self.outbox.send(pending.mentor, {
                "type": "tip_acked", "tip_id": msg.tip_id, "rtt_ms": round(rtt_ms, 3),
                "delivery_ms": round(delivery_ms, 3),
            })
        self.log_event({"type": "tip_ack", "session_id": session_id, "t_ns": now, "tip_id": msg.tip_id,
                        "rtt_ms": rtt_ms, "delivery_ms": delivery_ms})

    def clear(self) -> None:
        self._pending.clear()
