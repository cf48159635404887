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
    assert not client.exists(keys.intake) and not client.exists(keys.frames)  # nothing sent


def test_a_source_no_worker_takes_is_one_input_s_error_for_produce(redis_url, client, keys, image_path):
    """What `produce` and the expander send goes through submit_item: a refused job is that input's
    error, said and counted, and the next input is sent (not a ValueError ending the run)."""
    from moodstream.shared.media import FrameItem

    said = []
    producer = Producer(settings_for(redis_url), notice=said.append)
    data = image_path("single").read_bytes()
    assert producer.submit_item(FrameItem("s" * 5000, 0, data=data, page=1)) is None
    assert not producer.submit_item(FrameItem("photo.jpg", 0, data=data, page=1)).dropped
    assert producer.stats.failed_inputs == [("s" * 5000, "bad_field")] and client.llen(keys.intake) == 1
    assert len(said) == 1 and "not sent" in said[0], said
