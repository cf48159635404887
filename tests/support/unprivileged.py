"""A child process that file permissions bind, for tests of folders it may not read.

As root, ``chmod 000`` stops no read (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): a test of "permission
denied" run as root saw the folder's files. Where the suite runs as root the child runs without those
two capabilities (util-linux's ``setpriv``: still uid 0, so it reads the checkout and the interpreter
as their owner, but another mode's denial holds); a child as uid 65534 could not start this
interpreter where it lives under ``/root`` (mode 700). Not root: the child runs as it is. Either way
a probe first checks that the child is refused an unreadable folder, else the test is skipped with why.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

DROP = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")


@functools.cache
def unprivileged_prefix() -> tuple[str, ...]:
    """What to put before a command so it cannot read a folder of mode 000 (skips the test where
    nothing here can make it so; probed once a process)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root, where chmod 000 stops no read, and no setpriv here to drop the "
                    "capabilities that let root read anything")
    prefix = DROP if os.geteuid() == 0 else ()
    probe = tempfile.mkdtemp(prefix="moodstream-locked-")
    try:
        os.chmod(probe, 0)
        ran = subprocess.run([*prefix, sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", probe],
                             capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(probe, 0o700)
        os.rmdir(probe)
    if "PermissionError" not in ran.stderr:
        pytest.skip(f"a child {'without CAP_DAC_OVERRIDE (setpriv) ' if prefix else ''}still lists a folder of "
                    f"mode 000 here (exit {ran.returncode}: {ran.stderr.strip()[-200:]})")
    return prefix
