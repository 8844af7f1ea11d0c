"""Audio decoded on the event loop instead of in one thread per receiver (aiortc ==1.16.0).

aiortc's RTCRtpReceiver puts every encoded frame on a ``queue.Queue`` read by its own decoder
thread, which decodes it and hands each frame back with ``asyncio.run_coroutine_threadsafe(
queue.put(frame))``: per 20 ms audio frame a thread wake-up, a GIL hand-over, a self-pipe write
that wakes the loop, and a new Task. An Opus frame decodes in ~60-90 µs, less than that
round trip costs; and with one server process per core the thread buys no parallelism.

``use_inline_audio_decode()`` makes receivers created from then on build an ``InlineDecodeQueue``
as that queue (``_rtcrtpreceiver.queue.Queue``): its ``put()``, called by the receiver on the
loop, decodes audio right there and puts the frames on the track's asyncio queue. Video and the
end-of-stream ``None`` still go to the decoder thread, which otherwise idles on ``get()``; so
stopping a receiver works as before.

Opus is decoded to mono (``MonoOpusDecoder``: 47 µs a frame against 83 µs for aiortc's stereo
decoder, and half the samples to convert): every consumer here (coach, recorder, relay, QA)
averages the channels anyway. Other audio codecs use aiortc's decoder. A receiver whose audio
only feeds the coach can have its Opus decoded at 16 kHz by libopus itself
(``decode_received_audio_at``, media/opus_native.py): a third of the CPU again.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import threading
import types
from typing import Any

import aiortc.rtcrtpreceiver as _rtcrtpreceiver
import av
from aiortc import RTCPeerConnection
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.opus_native import NativeOpusDecoder

log = logging.getLogger(__name__)

_STOCK_DECODER_WORKER = _rtcrtpreceiver.decoder_worker
_OPUS_TIME_BASE = fractions.Fraction(1, 48_000)


class MonoOpusDecoder:
    """aiortc's ``OpusDecoder`` with one channel out (packed s16, 48 kHz)."""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libopus", "r")
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = 48_000

    def decode(self, encoded_frame: JitterFrame) -> list[av.AudioFrame]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = _OPUS_TIME_BASE
        return self.codec.decode(packet)


def audio_decoder(codec: RTCRtpCodecParameters, native_rate: int | None = None) -> Any:
    if codec.name.lower() != "opus":
        return get_decoder(codec)
    if native_rate is not None and NativeOpusDecoder.available():
        return NativeOpusDecoder(native_rate)
    return MonoOpusDecoder()


class InlineDecodeQueue(queue.Queue):  # of aiortc's (codec, encoded frame)
    """A receiver's decoder queue that decodes audio in ``put()`` once its thread has bound it."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._output: asyncio.Queue[Any] | None = None
        self._decode_error: threading.Event | None = None
        self._decoder: Any = None
        self._codec_name: str | None = None
        self.native_rate: int | None = None  # Opus decoded by libopus at this rate (None: 48 kHz)
        self.decoded = 0  # encoded frames decoded inline

    def set_native_rate(self, rate: int | None) -> None:
        """Decode Opus at ``rate`` from the next frame on (the consumer resamples what came before)."""
        self.native_rate = rate
        self._codec_name = None  # make the decoder again

    def bind(self, output: asyncio.Queue[Any], decode_error: threading.Event) -> None:
        self._output, self._decode_error = output, decode_error

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        output = self._output
        if item is None or output is None or not item[0].mimeType.lower().startswith("audio/"):
            super().put(item, block, timeout)  # video, the end, or before the thread bound us
            return
        codec, encoded_frame = item
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = audio_decoder(codec, self.native_rate), codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:  # as aiortc's worker: keep the decoder, report, go on
            log.warning("inline %s decode failed: %s", codec.name, exc)
            if self._decode_error is not None:
                self._decode_error.set()
            return
        self.decoded += 1
        for frame in frames:
            output.put_nowait(frame)


def _decoder_worker(loop: asyncio.AbstractEventLoop, input_q: queue.Queue,
                    output_q: asyncio.Queue[Any], decode_error: threading.Event) -> None:
    """aiortc's decoder thread body: bind an inline queue, then serve what still comes (video,
    the end of the stream) as before."""
    if isinstance(input_q, InlineDecodeQueue):
        input_q.bind(output_q, decode_error)
    _STOCK_DECODER_WORKER(loop, input_q, output_q, decode_error)


_QUEUE_MODULE = types.SimpleNamespace(Queue=InlineDecodeQueue)


def use_inline_audio_decode(enabled: bool = True) -> None:
    """Receivers created from now on decode audio on the loop (or, ``enabled=False``, in their
    thread as stock aiortc does). Process-wide, idempotent."""
    if enabled:
        _rtcrtpreceiver.queue = _QUEUE_MODULE  # type: ignore[assignment]  # the pinned patch
        _rtcrtpreceiver.decoder_worker = _decoder_worker
    else:
        _rtcrtpreceiver.queue = queue
        _rtcrtpreceiver.decoder_worker = _STOCK_DECODER_WORKER


def inline_audio_decode_enabled() -> bool:
    return _rtcrtpreceiver.decoder_worker is _decoder_worker


def decode_received_audio_at(pc: RTCPeerConnection, rate: int) -> bool:
    """Have ``pc``'s audio receivers decode Opus at ``rate`` (mono): for audio whose every
    consumer wants that rate. False when nothing changed (inline decoding off, or no libopus)."""
    if not NativeOpusDecoder.available():
        return False
    changed = False
    for transceiver in pc.getTransceivers():
        decode_queue = getattr(transceiver.receiver, "_RTCRtpReceiver__decoder_queue", None)
        if transceiver.kind == "audio" and isinstance(decode_queue, InlineDecodeQueue):
            decode_queue.set_native_rate(rate)
            changed = True
    return changed
