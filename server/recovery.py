"""On start: finish the sessions a dead process left ``live`` (kill -9, power loss).

A live record is orphaned when no process owns its room any more, or another process owns it
now (the room moved on). It becomes ``ended`` with ``end_reason: server_lost``, its end time the
last logged event, and its recording linked if the WAV is on disk (header repaired). The report is
built from the logged events when first asked for, like any record without one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from media.wav_repair import repair_wav_header
from server.store.base import Store

log = logging.getLogger(__name__)

SCAN_LIMIT = 2000  # newest records looked at on start


async def finalize_orphaned_sessions(store: Store, recordings: Path, wall_now: float | None = None) -> list[str]:
    """Finish every orphaned live session; returns their ids."""
    finished: list[str] = []
    for record in await store.list_sessions(limit=SCAN_LIMIT):
        if record.get("status") != "live":
            continue
        owner = await store.room_owner(str(record.get("room")))
        if owner is not None and owner == record.get("process_id"):
            continue  # its process is alive and still holds the room
        await _finish(store, record, recordings, wall_now)
        finished.append(str(record["session_id"]))
    if finished:
        log.warning("finished %d session(s) left live by a process that is gone: %s",
                    len(finished), ", ".join(s[:8] for s in finished))
    return finished


async def _finish(store: Store, record: dict[str, Any], recordings: Path, wall_now: float | None) -> None:
    session_id = str(record["session_id"])
    events = await store.events(session_id)
    started = float(record.get("started_at") or time.time())
    ended = _last_event_wall_time(events)
    if ended is None:
        ended = wall_now if wall_now is not None else time.time()
    wav = recordings / f"{session_id}.wav"
    if not record.get("recording") and wav.is_file() and repair_wav_header(wav):
        record["recording"] = wav.name
    record.update(status="ended", end_reason="server_lost", ended_at=ended,
                  duration_s=round(max(0.0, ended - started), 3))
    await store.save_session(record)


def _last_event_wall_time(events: list[dict[str, Any]]) -> float | None:
    """Wall time of the last event: events carry perf-clock ns; the session_config event pairs
    one with wall seconds (``wall_s``)."""
    anchor = next((e for e in events if e.get("type") == "session_config" and e.get("wall_s")), None)
    stamps = [int(e["t_ns"]) for e in events if isinstance(e.get("t_ns"), int)]
    if anchor is None or not stamps or not isinstance(anchor.get("t_ns"), int):
        return None
    return float(anchor["wall_s"]) + (max(stamps) - int(anchor["t_ns"])) / 1e9
