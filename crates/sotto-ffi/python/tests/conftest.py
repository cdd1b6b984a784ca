"""Fixtures: a `sotto-relay` process on a free loopback port with a
temporary SQLite store, and profiles with fast Argon2id parameters.

The relay binary is the one cargo built (`cargo build -p sotto-relay
--features tls --bin sotto-relay`): `SOTTO_TEST_RELAY_BINARY` names it, or it is
looked up in the workspace's target directory (`CARGO_TARGET_DIR`, else
`target/`).
"""

import os
import pathlib
import shutil
import subprocess

import pytest

import sotto

REPO = pathlib.Path(__file__).resolve().parents[4]

# The frame limit the test relay announces: small, so that a "huge"
# message is refused without moving megabytes.
MAX_FRAME = 65536

# Argon2id at its cheapest: tests open many profiles. Never for real use.
FAST = sotto.ClientOptions(kdf_memory_kib=64, kdf_iterations=1)


def relay_binary() -> pathlib.Path:
    named = os.environ.get("SOTTO_TEST_RELAY_BINARY")
    if named:
        return pathlib.Path(named)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "sotto-relay"


class Relay:
    """A running `sotto-relay`; `address` is `127.0.0.1:PORT`, or
    `tls://localhost:PORT` when started with a certificate."""

    def __init__(self, workdir: pathlib.Path, tls=None):
        binary = relay_binary()
        if not binary.exists():
            raise FileNotFoundError(
                f"{binary} is missing: cargo build -p sotto-relay --features tls --bin sotto-relay"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        args = [
            str(binary),
            "--listen", "127.0.0.1:0",
            "--db", str(workdir / "relay.db"),
            "--max-frame", str(MAX_FRAME),
            "--log", "warn",
        ]
        if tls is not None:
            cert, key = tls
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        self.log = open(workdir / "relay.log", "wb")
        # The relay takes settings from SOTTO_RELAY_* variables and refuses
        # unknown ones: it gets none of the caller's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOTTO_RELAY_")}
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, env=env
        )
        # "sotto-relay listening on 127.0.0.1:PORT"
        line = self.process.stdout.readline().decode()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the relay did not start: {line!r}, see {workdir / 'relay.log'}")
        hostport = line.split("listening on", 1)[1].split()[0]
        port = hostport.rsplit(":", 1)[1]
        self.address = f"tls://localhost:{port}" if tls else hostport

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def relay(tmp_path):
    r = Relay(tmp_path / "relay")
    yield r
    r.stop()


@pytest.fixture
def tls_relay(tmp_path):
    """A relay serving TLS with a certificate for localhost from a CA made
    for the test; yields the relay and the CA's PEM bytes (to pin)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test relay's certificate")
    ca, ca_key = tmp_path / "ca.pem", tmp_path / "ca-key.pem"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    csr, ext = tmp_path / "cert.csr", tmp_path / "cert.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=sotto test CA"],
        ["req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    r = Relay(tmp_path / "tls-relay", tls=(cert, key))
    yield r, ca.read_bytes()
    r.stop()
