"""The producer refuses a frame job that every worker would refuse (bad_field), before sending it:
sent, it was dead-lettered and the caller told nothing."""
import pytest
from tests.support.streamkit import settings_for

from moodstream.producer.client import Producer


@pytest.mark.parametrize("field, value", [("frame", -1), ("timestamp_s", float("nan")), ("source", "s" * 5000),
                                          ("job_id", ""), ("reply_to", "r" * 5000)])
def test_any_field_no_worker_takes_is_refused_before_it_is_sent(redis_url, client, keys, image_path, field, value):
    """As with a page: a frame job whose frame is -1, whose time is NaN, whose source or reply_to is
    over 4,096 characters or whose job id is empty was sent, and every worker dead-lettered it
    (bad_field), the caller told nothing. The producer now checks a job as a worker reads it."""
    from moodstream.shared.record import FrameJob

    producer = Producer(settings_for(redis_url))
    job = FrameJob("job-1", "photo.jpg", 0, image=image_path("single").read_bytes())
    setattr(job, field, value)
    with pytest.raises(ValueError, match=field):
        producer.submit(job)
    assert not client.exists(keys.frames) or client.xlen(keys.frames) == 0
