"""shared/recent.py: the bounded memory of job ids the commands and the track stage keep."""
import pytest

from moodstream.shared.recent import Recent


def test_the_oldest_key_is_forgotten_past_the_limit():
    seen = Recent(3)
    for key in "abcd":
        assert seen.first_time(key)
    assert list(seen) == ["b", "c", "d"]
    assert seen.first_time("a")  # forgotten, so new again
    assert not seen.first_time("d")
    assert list(seen) == ["c", "d", "a"]


def test_a_key_put_again_keeps_its_place_and_takes_the_new_value():
    runs = Recent(2)
    runs.put("x", 1)
    runs.put("y", 2)
    runs.put("x", 3)
    runs.put("z", 4)  # x is still the oldest: it goes
    assert dict(runs) == {"y": 2, "z": 4}


def test_put_all_keeps_the_last_of_many():
    ended = Recent(1000)
    ended.put_all((k, str(k)) for k in range(5000))
    assert len(ended) == 1000 and next(iter(ended)) == 4000 and ended[4999] == "4999"


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        Recent(0)
