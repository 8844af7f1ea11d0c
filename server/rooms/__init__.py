"""Room engine: runs on the process that owns the room (see server/router.py).

Modules: ``contracts`` (what the engine needs and offers), ``membership`` (who is in),
``records`` (the session record), ``event_log`` (durable events), ``peer`` (one participant's
WebRTC peer), ``shadow`` (mentor/whisper wiring), ``mentor`` (tips), ``room``, ``manager``.
"""

from server.rooms.contracts import ConnRef, MediaContext, MediaHandle, MediaHooks, NoMediaHooks, Outbox, WhisperTap
from server.rooms.manager import RoomManager
from server.rooms.membership import Participant
from server.rooms.room import Room

__all__ = ["ConnRef", "MediaContext", "MediaHandle", "MediaHooks", "NoMediaHooks", "Outbox", "Participant",
           "Room", "RoomManager", "WhisperTap"]
