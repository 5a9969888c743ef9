"""Helpers shared by the Python tests and benchmarks (tests/browser,
tests/bench): where the release binary is, and a self-signed certificate."""

import os
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sluice_binary():
    """$SLUICE_BIN, else the release build in $CARGO_TARGET_DIR (or target/)."""
    if os.environ.get("SLUICE_BIN"):
        return os.path.abspath(os.environ["SLUICE_BIN"])
    return os.path.join(REPO, os.environ.get("CARGO_TARGET_DIR", "target"), "release", "sluice")


def make_cert(directory):
    """Writes cert.pem and key.pem into `directory` (the README's `openssl
    req`: P-256, valid for localhost and 127.0.0.1, here for two days);
    returns their paths."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key
