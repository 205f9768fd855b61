#!/usr/bin/env python3
"""QUIC clients (aioquic) for udplb's tests: N connections to one server
address, each making --requests requests; after --move-after answers each
connection moves: a new UDP socket on a new source port (NAT rebinding,
the connection ID stays), or with --migrate-to a socket on a second local
address after switching to a fresh connection ID (active migration). It
drives aioquic's QuicConnection itself over plain datagram sockets, which
is what lets it swap a connection's socket mid-connection.

A connection completes when every request was answered, all by the same
server, within --request-timeout each. Prints one JSON summary:
{"connections", "completed", "broken", "moved", "servers": {identity:
completed count}, "broken_by_server_id": {server ID hex, from the CID the
server gave the connection, or "none" if no server ever answered: count},
"failures": [...]}.
"""
import argparse
import json
import selectors
import socket
import ssl
import time

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection


class Client:
    def __init__(self, n: int, args, sel: selectors.BaseSelector, start_at: float):
        self.n = n
        self.args = args
        self.sel = sel
        self.start_at = start_at
        host, port = args.server.rsplit(":", 1)
        self.server = (host, int(port))
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=["udplb-test"],
            verify_mode=ssl.CERT_NONE,
            server_name="udplb-test",
            connection_id_length=8,
            idle_timeout=30.0,
        )
        self.quic = QuicConnection(configuration=config)
        self.sock = None
        self.started = False
        self.answers = []
        self.buffers = {}
        self.sent_at = None  # a request in flight since
        self.next_at = None  # the next request is due at
        self.moved = False
        self.failure = None
        self.finished = False

    def bind(self, address: str) -> None:
        old = self.sock
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.setblocking(False)
        self.sel.register(self.sock, selectors.EVENT_READ, self)
        if old is not None:
            self.sel.unregister(old)
            old.close()

    def start(self, now: float) -> None:
        self.started = True
        self.bind(self.args.bind)
        self.quic.connect(self.server, now=now)
        self.flush(now)

    def flush(self, now: float) -> None:
        for data, addr in self.quic.datagrams_to_send(now=now):
            try:
                self.sock.sendto(data, addr)
            except OSError:
                pass

    def request(self, now: float) -> None:
        sid = self.quic.get_next_available_stream_id()
        body = f"request {self.n} {len(self.answers)}".encode()
        self.quic.send_stream_data(sid, body, end_stream=True)
        self.sent_at, self.next_at = now, None
        self.flush(now)

    def server_id(self) -> str:
        """The server ID in the CID the server gave us, if it gave one."""
        peer = self.quic._peer_cid
        if peer.sequence_number is None:  # still our own random Initial DCID
            return "none"
        return peer.cid[1:1 + self.args.server_id_len].hex()

    def fail(self, why: str) -> None:
        if not self.finished:
            self.failure = f"connection {self.n}: {why} (answers: {self.answers})"
            self.finished = True

    def move(self, now: float) -> None:
        self.moved = True
        if self.args.migrate_to:
            # A new path gets a new connection ID, as RFC 9000 9.5 asks.
            self.quic.change_connection_id()
            self.bind(self.args.migrate_to)
        else:
            self.bind(self.args.bind)

    def received(self, now: float) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, OSError):
                break
            self.quic.receive_datagram(data, addr, now=now)
        self.process(now)

    def process(self, now: float) -> None:
        ev = self.quic.next_event()
        while ev is not None:
            if isinstance(ev, events.HandshakeCompleted):
                self.request(now)
            elif isinstance(ev, events.StreamDataReceived):
                data = self.buffers.pop(ev.stream_id, b"") + ev.data
                if not ev.end_stream:
                    self.buffers[ev.stream_id] = data
                else:
                    self.answered(data.decode(errors="replace"), now)
            elif isinstance(ev, events.ConnectionTerminated):
                if len(self.answers) < self.args.requests:
                    self.fail(f"terminated: {ev.reason_phrase or ev.error_code}")
            ev = self.quic.next_event()
        self.flush(now)

    def answered(self, text: str, now: float) -> None:
        self.answers.append(text.split(" ", 1)[0])
        self.sent_at = None
        if len(set(self.answers)) > 1:
            self.fail("answered by more than one server")
        elif len(self.answers) == self.args.requests:
            self.finished = True
            self.quic.close()
        else:
            if len(self.answers) == self.args.move_after:
                self.move(now)
            self.next_at = now + self.args.interval

    def timer(self, now: float) -> None:
        if not self.started:
            if now >= self.start_at:
                self.start(now)
            return
        t = self.quic.get_timer()
        if t is not None and now >= t:
            self.quic.handle_timer(now=now)
            self.process(now)
        if self.finished:
            return
        if self.next_at is not None and now >= self.next_at:
            self.request(now)
        deadline = self.args.request_timeout
        if self.sent_at is not None and now - self.sent_at > deadline:
            self.fail(f"request {len(self.answers)} not answered within {deadline} s")
        elif not self.answers and now - self.start_at > deadline:
            self.fail(f"no handshake within {deadline} s")

    def wake_at(self) -> float:
        if not self.started:
            return self.start_at
        times = []
        for t in (self.quic.get_timer(), self.next_at):
            if t is not None:
                times.append(t)
        return min(times, default=time.time() + 0.05)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="ADDRESS:PORT")
    p.add_argument("--bind", required=True, help="local address")
    p.add_argument("--migrate-to", help="second local address: migrate instead of rebinding")
    p.add_argument("--connections", type=int, default=30)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--move-after", type=int, default=2,
                   help="answers before moving (0: never)")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between requests")
    p.add_argument("--spread", type=float, default=0.0,
                   help="start the connections evenly over this many seconds")
    p.add_argument("--request-timeout", type=float, default=3.0)
    p.add_argument("--deadline", type=float, default=60.0, help="whole run, seconds")
    p.add_argument("--server-id-len", type=int, default=2)
    args = p.parse_args()

    sel = selectors.DefaultSelector()
    t0 = time.time()
    step = args.spread / max(args.connections - 1, 1)
    clients = [Client(i, args, sel, t0 + i * step) for i in range(args.connections)]
    while time.time() - t0 < args.deadline and not all(c.finished for c in clients):
        now = time.time()
        wake = min((c.wake_at() for c in clients if not c.finished), default=now)
        for key, _ in sel.select(max(0.0, min(wake - now, 0.05))):
            key.data.received(time.time())
        now = time.time()
        for c in clients:
            if not c.finished:
                c.timer(now)
    for c in clients:
        if not c.finished:
            c.fail("still running at the deadline")
    # Let the closes go out.
    for c in clients:
        if c.sock is not None:
            c.flush(time.time())
    completed = [c for c in clients if c.failure is None]
    servers = {}
    for c in completed:
        servers[c.answers[0]] = servers.get(c.answers[0], 0) + 1
    broken_by = {}
    for c in clients:
        if c.failure is not None:
            broken_by[c.server_id()] = broken_by.get(c.server_id(), 0) + 1
    print(json.dumps({
        "connections": len(clients),
        "completed": len(completed),
        "broken": len(clients) - len(completed),
        "moved": sum(c.moved for c in clients),
        "servers": servers,
        "broken_by_server_id": broken_by,
        "failures": [c.failure for c in clients if c.failure][:10],
    }))


if __name__ == "__main__":
    main()
