"""The worker's metrics server that cannot listen: every failure said "set MOODSTREAM_METRICS_PORT to a
free port", also where the port was not the trouble (`--metrics-host [::1]` as URLs write it, a typo'd
or foreign address: "cannot listen on [::1]:0 (Name or service not known); set MOODSTREAM_METRICS_PORT
to a free port", with port 0 already), and named only the variable where the user gave the flag. The
line now names what to change: the host (flag and variable) for an address, the port for a taken one."""

from __future__ import annotations

import socket

import pytest

from moodstream.shared.errors import ConfigError
from moodstream.worker.metrics import MetricsServer, WorkerMetrics


@pytest.mark.parametrize("host", ["[::1]", "999.1.1.1", " "])
def test_an_address_that_is_none_names_the_host_not_the_port(host):
    with pytest.raises(ConfigError) as caught:
        MetricsServer(WorkerMetrics(), host, 0)
    message = str(caught.value)
    assert "free port" not in message and "METRICS_PORT" not in message, message
    assert "--metrics-host" in message and "MOODSTREAM_METRICS_HOST" in message, message
    if host.startswith("["):
        assert "without brackets" in message, message


def test_a_port_in_use_says_so_and_names_the_flag_and_the_variable():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            MetricsServer(WorkerMetrics(), "127.0.0.1", port)
    message = str(caught.value)
    assert f"port {port} is in use" in message, message
    assert "--metrics-port" in message and "MOODSTREAM_METRICS_PORT" in message, message
