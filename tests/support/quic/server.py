#!/usr/bin/env python3
"""A QUIC server (aioquic) that issues QUIC-LB connection IDs, for udplb's
tests (tests/quic.rs).

Every connection ID it chooses, the first one of a connection and those it
hands out later in NEW_CONNECTION_ID frames, has the plaintext QUIC-LB form
(draft-ietf-quic-load-balancers-19): a first octet with the config rotation
in its top 3 bits and the CID length - 1 in the low 5, then --server-id,
then random bytes. The code that does it is the README's (section "QUIC",
the python block), run as it is written there, so that what the README
tells aioquic users is what the tests run; only its SERVER_ID, CID_LEN and
CONFIG_ID are set from the arguments.

Each request (a bidirectional stream, ended by the client) is answered on
the same stream with "<identity> <request>", so a client knows which
backend served it. Prints "ready" once it listens; runs until killed.
"""
import argparse
import asyncio
import datetime
import pathlib
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio import server as aioquic_server
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ARGS = None
README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def readme_block() -> str:
    """The first python block of the README's section "QUIC"."""
    text = README.read_text()
    section = text[text.index("\n## QUIC\n") :]
    section = section[: section.index("\n## ", 1)]
    start = section.index("\n```python\n") + len("\n```python\n")
    return section[start : section.index("\n```\n", start)]


def issue_quic_lb_cids() -> None:
    """Runs the README's block with this server's parameters."""
    names = {"__name__": "readme_quic"}
    exec(compile(readme_block(), f"{README} (QUIC)", "exec"), names)
    names.update(
        SERVER_ID=bytes.fromhex(ARGS.server_id),
        CID_LEN=ARGS.cid_len,
        CONFIG_ID=ARGS.config_id,
    )
    assert aioquic_server.QuicConnection is names["QuicLbConnection"]


class Answer(QuicConnectionProtocol):
    """Answers each request stream with this server's identity."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._requests = {}

    def quic_event_received(self, event) -> None:
        if isinstance(event, StreamDataReceived):
            data = self._requests.pop(event.stream_id, b"") + event.data
            if not event.end_stream:
                self._requests[event.stream_id] = data
                return
            answer = ARGS.identity.encode() + b" " + data
            self._quic.send_stream_data(event.stream_id, answer, end_stream=True)
            self.transmit()


def self_signed():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "udplb-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert, key


async def main() -> None:
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=["udplb-test"],
        connection_id_length=ARGS.cid_len,
        idle_timeout=30.0,
    )
    config.certificate, config.private_key = self_signed()
    issue_quic_lb_cids()
    await serve(ARGS.host, ARGS.port, configuration=config, create_protocol=Answer)
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-id", required=True, help="hex, e.g. 0a01")
    p.add_argument("--config-id", type=int, default=0)
    p.add_argument("--cid-len", type=int, default=8)
    p.add_argument("--identity", required=True)
    ARGS = p.parse_args()
    if not (1 + len(bytes.fromhex(ARGS.server_id)) + 4 <= ARGS.cid_len <= 20):
        sys.exit("--cid-len must leave room for the server ID and a 4-byte nonce")
    asyncio.run(main())
