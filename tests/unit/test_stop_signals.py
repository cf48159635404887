"""shared/stop_signals.py: a stop signal raised where the main thread happens to be could land
inside an output being written (an annotated video's writer opened but not yet kept: a file of a
header only, that no player opens; `test_a_stopped_run_writes_what_it_did_and_says_so` failed so
under load). Inside ``deferred_stop`` it is raised once the output is written."""
import os
import signal

import pytest

from moodstream.shared.stop_signals import Stopped, deferred_stop, restore_stop_signals, take_stop_signals


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Stopped)])
def test_a_stop_inside_a_deferred_section_is_raised_as_it_ends(signum, raised):
    previous = take_stop_signals()
    done = []
    try:
        with pytest.raises(raised):
            with deferred_stop():
                os.kill(os.getpid(), signum)
                done.append("the rest of the output")
        assert done == ["the rest of the output"]
        with deferred_stop():  # raised once: the next section is not cut
            done.append("next")
        assert done[-1] == "next"
        with pytest.raises(raised):  # outside a section, at once as before
            os.kill(os.getpid(), signum)
            done.append("never")
        assert done[-1] == "next"
    finally:
        restore_stop_signals(previous)


def test_a_section_that_fails_spends_the_stop_that_came_with_it():
    """A section ended by its own error (a broken pipe) ends the run: the stop that came inside it
    must not be raised at the end of the next run's first section (API and test runs share a process)."""
    previous = take_stop_signals()
    try:
        with pytest.raises(BrokenPipeError):
            with deferred_stop():
                os.kill(os.getpid(), signal.SIGINT)
                raise BrokenPipeError
        with deferred_stop():
            pass  # nothing raised here
    finally:
        restore_stop_signals(previous)


def test_a_handler_python_cannot_name_is_left_in_place():
    """signal.signal() answers None for a handler installed from C (an embedding program, a C
    library): giving None back raised TypeError, after the command had run, in place of its exit."""
    from moodstream.shared.stop_signals import handling

    before = signal.getsignal(signal.SIGINT)
    restore_stop_signals({signal.SIGINT: None})
    assert signal.getsignal(signal.SIGINT) is before
    with handling(lambda *a: None, signals=(signal.SIGINT,)):
        pass
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("signum,raised", [(signal.SIGTERM, Stopped), (signal.SIGINT, KeyboardInterrupt)])
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (the drop itself, as Python says it)
def test_a_stop_raised_inside_a_finalizer_is_raised_again_at_the_next_check(signum, raised):
    """A signal whose handler runs inside a finalizer (a redis ConnectionPool's __del__ while `up` loaded its
    models): Python prints "Exception ignored in ..." and drops it, and `up` ran to its end, exit 0, where
    SIGTERM should have stopped it (143). The loops check for a stop so dropped (`raise_dropped_stop`)."""
    from moodstream.shared.stop_signals import raise_dropped_stop

    previous = take_stop_signals()
    try:
        class Finalized:
            def __del__(self):
                os.kill(os.getpid(), signum)
                sum(range(1000))  # (the handler runs at the next bytecode: here, inside the finalizer)

        Finalized()
        with pytest.raises(raised):
            raise_dropped_stop()
        raise_dropped_stop()  # said once: nothing more
    finally:
        restore_stop_signals(previous)
