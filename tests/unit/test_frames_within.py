"""shared.transport.frames_within: the frames that fit in a count and in stream_max_mb MB."""

from moodstream.shared.transport import MB, frames_within


def test_the_fewer_of_the_count_and_the_budget():
    assert frames_within(2000, 1024, None) == 2000  # no size known yet
    assert frames_within(2000, 1024, 1.6 * MB) == 639  # 1080p PNG frames (1,677,722 bytes)
    assert frames_within(2000, 1, 3 * MB) == 1  # a frame over the budget: one at a time, never none


def test_a_budget_of_any_size_is_a_count_not_an_overflow():
    # MOODSTREAM_STREAM_MAX_MB of 401 digits passed the settings' checks, and the producer's first
    # limit raised OverflowError (int too large to convert to float) from the mean size, a float
    assert frames_within(2000, 10**400, 1.6 * MB) == 2000
    assert frames_within(2000, 2**62, 1234.5) == 2000
