"""frame_arrival_stats: underruns, missing frames and inter-arrival from synthetic frame logs."""

from qa.detect import frame_arrival_stats, onset_delays_by_pts

MS = 1_000_000


def test_steady_stream_has_no_underruns_or_missing_frames() -> None:
    arrivals = [i * 20 * MS for i in range(50)]
    pts = [i * 960 for i in range(50)]
    stats = frame_arrival_stats(arrivals, pts, [960] * 50)
    assert stats["frames"] == 50
    assert stats["underruns"] == 0
    assert stats["missing_frames"] == 0
    assert stats["out_of_order"] == 0
    assert stats["inter_arrival_p95_ms"] == 20.0


def test_a_stall_is_an_underrun_and_bursty_catch_up_is_not() -> None:
    # 4 frames stuck for 80 ms, then released together: one gap > 60 ms, no audio lost.
    arrivals = [0, 20, 40, 120, 120, 120, 120, 140]
    stats = frame_arrival_stats([a * MS for a in arrivals], [i * 960 for i in range(8)], [960] * 8)
    assert stats["underruns"] == 1
    assert stats["underrun_ms"] == 80.0
    assert stats["missing_frames"] == 0
    assert stats["inter_arrival_max_ms"] == 80.0


def test_gap_exactly_at_the_threshold_is_not_an_underrun() -> None:
    stats = frame_arrival_stats([0, 60 * MS], [0, 960], [960, 960])
    assert stats["underruns"] == 0


def test_skipped_pts_count_as_missing_frames_across_the_rtp_wrap() -> None:
    start = (1 << 32) - 2 * 960
    pts = [start, start + 960, (start + 4 * 960) % (1 << 32), (start + 5 * 960) % (1 << 32)]
    stats = frame_arrival_stats([i * 20 * MS for i in range(4)], pts, [960] * 4)
    assert stats["missing_frames"] == 2
    assert stats["out_of_order"] == 0


def test_an_earlier_frame_after_a_later_one_is_out_of_order() -> None:
    stats = frame_arrival_stats([0, 20 * MS, 40 * MS], [960, 0, 1920], [960] * 3)
    assert stats["out_of_order"] == 1


def test_empty_log() -> None:
    stats = frame_arrival_stats([], [], [])
    assert stats["frames"] == 0 and stats["underruns"] == 0 and stats["inter_arrival_p95_ms"] == 0.0


def test_onsets_are_matched_by_pts_even_when_a_delay_exceeds_the_burst_period() -> None:
    # Bursts every 400 ms (19_200 samples); the receiver's pts are the sender's minus 960.
    sent = [(i * 19_200, i * 400 * MS) for i in range(5)]
    delays = [40, 45, 500, 60, 40]  # the third burst arrives after the fourth was sent
    received = [(p - 960, t + d * MS) for (p, t), d in zip(sent, delays)]
    assert onset_delays_by_pts(sent, received) == [d * MS for d in delays]


def test_a_sent_onset_never_received_is_left_out() -> None:
    sent = [(0, 0), (19_200, 400 * MS), (38_400, 800 * MS)]
    received = [(0, 30 * MS), (38_400, 830 * MS)]
    assert onset_delays_by_pts(sent, received) == [30 * MS, 30 * MS]
    assert onset_delays_by_pts(sent, []) == []
