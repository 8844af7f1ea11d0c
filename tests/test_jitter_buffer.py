"""The audio jitter buffer (media/jitter.py) against aiortc's own, packet by packet (no clock)."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.jitter import AudioJitterBuffer


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq % 65536, timestamp=seq * 960 % (1 << 32))
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]  # the depayloaded Opus frame
    return p


def play(buffer: JitterBuffer, order: list[int]) -> list[list[int]]:
    """For each arriving packet, the frames (as sequence numbers) it released."""
    out = []
    for seq in order:
        _, frame = buffer.add(packet(seq))
        out.append([] if frame is None else [frame.timestamp // 960])
    return out


def waiting(buffer: JitterBuffer) -> int:
    return sum(p is not None for p in buffer._packets)


def test_in_order_each_packet_releases_the_one_before() -> None:
    buf = AudioJitterBuffer(capacity=16, prefetch=1)
    assert play(buf, list(range(6))) == [[], [0], [1], [2], [3], [4]]
    assert (buf.skipped_gaps, buf.dropped, waiting(buf)) == (0, 0, 1)


def test_one_reordered_packet_is_waited_for_and_nothing_is_lost() -> None:
    buf = AudioJitterBuffer(capacity=16, prefetch=1)
    got = play(buf, [0, 1, 3, 2, 4, 5])
    assert [s for frames in got for s in frames] == [0, 1, 2, 3]
    assert (buf.skipped_gaps, buf.dropped) == (0, 0)
    assert waiting(buf) == 2  # one packet more than the prefetch: the 20 ms the bound allows


def test_a_lost_packet_costs_two_packets_of_wait_and_no_lasting_delay() -> None:
    order = [k for k in range(60) if k != 10]
    ours, stock = AudioJitterBuffer(capacity=16, prefetch=1), JitterBuffer(capacity=16, prefetch=1)
    got, stock_got = play(ours, order), play(stock, order)
    released = [s for frames in got for s in frames]
    assert 10 not in released and released == sorted(released)
    # frames keep coming: no more than late_packets + 1 arrivals without one
    longest_gap = max(len(run) for run in "".join("x" if not f else "." for f in got).split(".") if run)
    assert longest_gap <= ours.late_packets + 1
    assert ours.skipped_gaps == 1
    assert waiting(ours) <= ours._prefetch + ours.max_backlog  # ~20 ms more at most, not ~300
    # aiortc's stalls ~16 packets and stays that far behind for good
    stock_gap = max(len(run) for run in "".join("x" if not f else "." for f in stock_got).split(".") if run)
    assert stock_gap >= 14 and waiting(stock) >= 14


def test_a_packet_later_than_the_wait_is_dropped_not_played_out_of_order() -> None:
    buf = AudioJitterBuffer(capacity=16, prefetch=1)
    got = play(buf, [0, 1, 2, 4, 5, 6, 7, 3, 8, 9])
    released = [s for frames in got for s in frames]
    # 3 was given up on after two packets; catching up dropped 4; 3 itself came too late
    assert released == [0, 1, 2, 5, 6, 7]
    assert (buf.skipped_gaps, buf.dropped) == (1, 1)


def test_a_burst_after_a_stall_is_cut_back_to_the_prefetch() -> None:
    # 0..3 arrive, then the network holds 4..12 and delivers them at once: without a bound the
    # receiver would stay 8 packets (160 ms) behind from then on.
    order = [0, 1, 2, 3, *range(5, 13), 4]  # 4 arrives last: everything waited behind it
    buf, stock = AudioJitterBuffer(capacity=16, prefetch=1), JitterBuffer(capacity=16, prefetch=1)
    play(buf, order)
    play(stock, order)
    assert waiting(buf) <= buf._prefetch + buf.max_backlog
    assert waiting(stock) >= 7
