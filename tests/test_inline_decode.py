"""Received audio decoded on the event loop (media/inline_decode.py), real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import queue

import aiortc.rtcrtpreceiver as aiortc_receiver
import numpy as np

from media.inline_decode import (
    InlineDecodeQueue,
    MonoOpusDecoder,
    inline_audio_decode_enabled,
    use_inline_audio_decode,
)
from media.peer import connect_in_process, create_peer_connection
from media.settings import MediaSettings
from qa.audio import SyntheticVideoTrack, ToneTrack
from qa.detect import tone_power
from tests.test_media import _Pair, _wait_for


def _receiver_parts(pair: _Pair, kind: str = "audio"):
    receiver = next(t.receiver for t in pair.b.getTransceivers() if t.kind == kind)
    return receiver._RTCRtpReceiver__decoder_queue, receiver._RTCRtpReceiver__decoder_thread


async def test_audio_is_decoded_in_the_receiver_call_and_the_stream_still_ends() -> None:
    tone = ToneTrack(freq_hz=440, amplitude=0.3)
    pair = _Pair(tone)
    assert inline_audio_decode_enabled()  # create_peer_connection applied the default setting
    async with pair:
        tone.sounding = True
        await asyncio.sleep(0.5)
        decode_queue, thread = _receiver_parts(pair)
        assert isinstance(decode_queue, InlineDecodeQueue)
        assert decode_queue.decoded >= 20 and decode_queue.qsize() == 0  # nothing for the thread
        assert isinstance(decode_queue._decoder, MonoOpusDecoder)  # Opus comes out as one channel
        assert thread is not None and thread.is_alive()  # idle on get(): video and the end go there
        pcm = np.concatenate([c for c, _ in pair.chunks])
        window = pcm[np.argmax(np.abs(pcm) > 3000) + 1600 :][:3200]
        assert tone_power(window, 16_000, 440) > 100 * tone_power(window, 16_000, 1000)
        await pair.b.close()  # the receiver stops: the end-of-stream goes through the thread
        assert pair.inbound is not None
        await asyncio.wait_for(pair.inbound.wait_ended(), 5)
        assert pair.inbound.stats["ended"]
        await _wait_for(lambda: not thread.is_alive())


async def test_video_still_goes_to_the_decoder_thread() -> None:
    settings = MediaSettings(ice_loopback_only=True)
    a, b = create_peer_connection(settings), create_peer_connection(settings)
    a.addTrack(SyntheticVideoTrack())
    frames: list[object] = []
    readers: list[asyncio.Task[None]] = []

    async def read(track) -> None:
        while len(frames) < 3:
            frames.append(await track.recv())

    b.on("track", lambda track: readers.append(asyncio.ensure_future(read(track))))
    try:
        await connect_in_process(a, b)
        await _wait_for(lambda: len(frames) >= 3, timeout=10)
        receiver = b.getTransceivers()[0].receiver
        decode_queue = receiver._RTCRtpReceiver__decoder_queue
        assert isinstance(decode_queue, InlineDecodeQueue) and decode_queue.decoded == 0
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await a.close()
        await b.close()


def test_the_patch_can_be_turned_off_and_on_again() -> None:
    use_inline_audio_decode(False)
    try:
        assert not inline_audio_decode_enabled()
        assert aiortc_receiver.queue is queue
    finally:
        use_inline_audio_decode(True)
    assert inline_audio_decode_enabled()
