"""A file's video frames are encoded on several threads, a few frames ahead of the one sent
(producer/client.py `Producer.encoded_ahead`): one thread encoding each 1920x1080 frame as PNG held
`produce` at 14 frames a second. What is sent must be what one thread sends, in the same order."""
from pathlib import Path

import pytest
from tests.support.streamkit import settings_for

REPO = Path(__file__).resolve().parents[2]
CLIP, PHOTO = REPO / "samples" / "hamilton_clip.mp4", REPO / "samples" / "street.jpg"


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_frames_encoded_ahead_are_sent_as_one_thread_sends_them(redis_url, client, keys, monkeypatch, encoding):
    from moodstream.producer import client as producer_client
    from moodstream.shared.wire import decode_frame

    def sent(threads: int) -> list[tuple]:
        monkeypatch.setattr(producer_client, "ENCODE_THREADS", threads)
        client.delete(keys.intake)
        producer = producer_client.Producer(settings_for(redis_url), encoding=encoding)
        refs = list(producer.produce([str(CLIP), str(PHOTO), str(CLIP)], max_frames=9))
        jobs = [decode_frame(p) for p in client.lrange(keys.intake, 0, -1)]
        assert len(refs) == len(jobs) == 19 and producer.stats.sent == 19
        return [(j.source, j.frame, j.timestamp_s, j.shot, j.page, j.image) for j in jobs]

    one, four = sent(1), sent(4)
    assert four == one
    frames = [frame for source, frame, *_ in four if source == str(CLIP)]
    assert sorted(frames) == sorted(list(range(9)) * 2)
    assert frames in (list(range(9)) * 2, list(reversed(list(range(9)) * 2)))  # in order, as the list holds them
    assert [page for source, _, _, _, page, _ in four if source == str(PHOTO)] == [1]


def test_a_frame_that_cannot_be_encoded_is_its_own_error_and_the_rest_go(redis_url, client, keys, monkeypatch):
    from moodstream.producer import client as producer_client
    from moodstream.shared.errors import BadInputError

    import numpy as np

    from moodstream.shared.media import iter_frames

    real = producer_client.encode_pixels
    third = [i.image for i in iter_frames([str(CLIP)], max_frames=4)][3]

    def refuse_frame_3(rgb, encoding, quality=90):
        if np.array_equal(rgb, third):
            raise BadInputError("unsupported", "cannot png-encode this frame")
        return real(rgb, encoding, quality)

    monkeypatch.setattr(producer_client, "ENCODE_THREADS", 2)
    monkeypatch.setattr(producer_client, "encode_pixels", refuse_frame_3)
    said = []
    producer = producer_client.Producer(settings_for(redis_url), notice=said.append)
    refs = list(producer.produce([str(CLIP)], max_frames=6))
    assert [r.frame for r in refs] == [0, 1, 2, 4, 5]
    assert producer.stats.failed_inputs == [(str(CLIP), "unsupported")] and len(said) == 1, said
