"""rediss://: producer, worker and results over TLS to a real redis-server.

The server gets a throwaway self-signed certificate (openssl CLI); clients
verify it through ``ssl_ca_certs`` in the URL. Skips where openssl is missing
or the redis-server binary was built without TLS.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis
from tests.support.streamkit import round_trip, settings_for

from moodstream.shared.embedded import find_redis_server, free_port


@pytest.fixture
def tls_server(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                             "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip(f"this redis-server has no TLS support: {proc.stdout.read().decode()[-200:]}")
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, port
    finally:
        proc.terminate()
        proc.wait(5)


def test_rediss_end_to_end(tls_server, checkpoint):
    url, port = tls_server
    with pytest.raises(redis.ConnectionError):  # plain text is refused on the TLS port
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=2).ping()
    sent, got = round_trip(settings_for(url), checkpoint, "tls")
    assert sorted(r.job_id for r in got) == sorted(sent)
    assert all(r.error is None and r.faces for r in got)
