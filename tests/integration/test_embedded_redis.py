"""shared.embedded.EmbeddedRedis: the server it reports is its own child.

It checked only that *a* server answered PING on its port. When another redis-server held
that port (two `moodstream up` at once, two test sessions picking the same free port, or a
port freed by a restart and taken meanwhile), its child exited on the bind error and it went
on with the other's server: its users then wrote into, and flushed, someone else's Redis
(seen as chaos tests of one session failing while another session ran)."""

from __future__ import annotations

import pytest
import redis

from moodstream.shared import embedded
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.errors import ConfigError


def _pid(url: str, password: str | None = None) -> int:
    return int(redis.Redis.from_url(url, password=password).info("server")["process_id"])


@pytest.mark.parametrize("password", [None, "s3cret"])
def test_a_port_another_server_holds_is_refused_not_borrowed(password):
    extra = ["--requirepass", password] if password else []
    with EmbeddedRedis(extra_args=extra) as other:
        redis.Redis.from_url(other.url, password=password).set("theirs", "1")
        mine = EmbeddedRedis(port=other.port, extra_args=extra)
        with pytest.raises(ConfigError, match=f"port {other.port} is taken"):
            mine.start()
        assert mine.proc is None  # nothing of ours left running
        # the other server is untouched, and still the one on its port
        assert _pid(other.url, password) == other.proc.pid
        assert redis.Redis.from_url(other.url, password=password).get("theirs") == b"1"


def test_a_free_port_taken_before_the_server_binds_it_is_traded_for_another(monkeypatch):
    with EmbeddedRedis() as other:
        ports = iter([other.port])  # the race: the "free" port is the other server's by now
        real = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda: next(ports, None) or real())
        with EmbeddedRedis() as mine:
            assert mine.port != other.port
            assert _pid(mine.url) == mine.proc.pid  # our own child answers
        assert _pid(other.url) == other.proc.pid


def test_a_terminals_ctrl_c_reaches_the_owner_not_its_server(tmp_path):
    """A terminal's Ctrl-C signals its whole foreground process group. The embedded redis-server
    was in its owner's group, so it shut down at once, before `up` had handled the interrupt:
    `up --stay-open`'s dashboard then warned "Redis unreachable" (seen in CI), and an interrupted
    run's track stage could not publish what it held. The owner stops its server itself."""
    import os
    import signal
    import time

    owner = _owner(tmp_path, "signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner outlives the Ctrl-C here")
    try:
        url, pid, _ = owner.stdout.readline().split()
        os.killpg(owner.pid, signal.SIGINT)
        time.sleep(0.5)
        assert redis.Redis.from_url(url, socket_timeout=2).ping(), "the server went down on the group's Ctrl-C"
        owner.stdin.close()  # the owner stops it
        assert owner.wait(30) == 0
        assert not os.path.exists(f"/proc/{pid}") or "redis" not in open(f"/proc/{pid}/cmdline").read()
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)


def test_an_owner_killed_outright_takes_its_server_with_it(tmp_path):
    """`kill -9` of `up` (or of its terminal's whole group, or the OOM killer) left its embedded
    redis-server running, in a process group of its own, for good, with its folder in /tmp: one
    more for each such run. A watchdog beside the server stops it and removes the folder when
    its owner is gone, whatever the owner died of."""
    import os
    import signal
    import time

    owner = _owner(tmp_path)
    url, pid, folder = owner.stdout.readline().split()
    try:
        os.killpg(owner.pid, signal.SIGKILL)  # the owner's whole group: the server is not in it
        owner.wait(30)
        deadline = time.monotonic() + 10  # the watchdog removes the folder once the server is gone: wait for both
        while time.monotonic() < deadline and (_alive(int(pid)) or os.path.exists(folder)):
            time.sleep(0.1)
        assert not _alive(int(pid)), "the server outlived its owner"
        assert not os.path.exists(folder), "its folder was left behind"
    finally:
        if _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


def _owner(tmp_path, first: str = ""):
    """A Python process owning an EmbeddedRedis, in a process group of its own (as a terminal's
    foreground job), that prints its url, the server's process id and its folder, then waits on
    its stdin; ``first``: a line it runs before."""
    import subprocess
    import sys

    script = tmp_path / "owner.py"
    script.write_text(
        f"import signal, sys\n{first}\n"
        "from moodstream.shared.embedded import EmbeddedRedis\n"
        "with EmbeddedRedis() as server:\n"
        "    print(server.url, server.proc.pid, server.dir, flush=True)\n"
        "    sys.stdin.readline()\n")
    return subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)


def _alive(pid: int) -> bool:
    """A redis-server still running as ``pid`` (a zombie, or the id taken by another program, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline") as f:
            return "redis" in f.read() and stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
