#!/usr/bin/env python3
"""An HTTP/3 client for sluice's e2e tests (tests/e2e/http3.rs), on aioquic.

The Rust tests start the server, run this program over a real UDP socket and
assert on what it prints: one JSON object on stdout. It is a small program of
its own rather than a Python test file because the server's side of every
test (its memory and descriptors from /proc, its counters, its access log)
is read by the Rust harness that every other e2e test uses.

    client.py get  --port P [--sni NAME] [--authority A] [--header 'k: v']... PATH...
        One connection; the paths are requested at once, each on its own
        stream. Prints {"responses": [{"status", "headers", "length",
        "sha256", "body"?}], "alt": ...}. `--body-out FILE` writes the first
        response's body. `--linger S` prints that, then keeps the
        connection open up to S seconds and prints {"closed_by_server"};
        `--ping-ms MS` sends a PING every MS meanwhile (the server
        acknowledges each: the connection is never quiet).
        `--outage-at BYTES --outage S`: once the first stream has BYTES of
        its body, prints {"outage": received} and drops every datagram that
        arrives for S seconds (a path that loses everything, as in a
        hand-over between networks), then receives again: what the server
        sent meanwhile is lost and must be sent again.
    client.py vanish --port P --after BYTES PATH
        Requests PATH, reads BYTES of its body, then exits without closing
        the connection (no CONNECTION_CLOSE: a client that vanished).
    client.py garbage --port P --count N
        Sends N datagrams of random bytes (1..1400) to the port.
    client.py handshakes --port P --count N
        Starts N QUIC handshakes, each from its own socket, sending only
        the client's first flight and never answering (held open for
        --hold seconds, so the server's packets find a socket).
"""

import argparse
import asyncio
import hashlib
import json
import os
import socket
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}
        self.closed = None
        # (bytes of the first stream, seconds): the outage to come, if any.
        self.outage = None
        self.dropping = False

    def datagram_received(self, data, addr):
        if self.dropping:
            return
        super().datagram_received(data, addr)

    def _outage(self, s):
        at, seconds = self.outage
        if s["received"] >= at:
            self.outage = None
            self.dropping = True
            print(json.dumps({"outage": s["received"]}), flush=True)
            asyncio.get_running_loop().call_later(seconds, self._restore)

    def _restore(self):
        self.dropping = False

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            s = self.streams.get(event.stream_id)
            if s is not None:
                s["reset"] = event.error_code
                self._done(s)
        if isinstance(event, ConnectionTerminated):
            self.closed = {"error_code": event.error_code, "reason": event.reason_phrase}
            for s in self.streams.values():
                self._done(s)
        for ev in self.h3.handle_event(event):
            s = self.streams.get(getattr(ev, "stream_id", None))
            if s is None:
                continue
            if isinstance(ev, HeadersReceived):
                s["headers"].extend(ev.headers)
            elif isinstance(ev, DataReceived):
                s["body"].extend(ev.data)
                s["received"] += len(ev.data)
                if self.outage is not None:
                    self._outage(s)
                if s["until"] is not None and s["received"] >= s["until"]:
                    self._done(s)
            if getattr(ev, "stream_ended", False):
                s["ended"] = True
                self._done(s)

    def _done(self, s):
        if not s["future"].done():
            s["future"].set_result(None)

    def request(self, authority, path, headers, until=None):
        sid = self._quic.get_next_available_stream_id()
        s = {
            "headers": [],
            "body": bytearray(),
            "received": 0,
            "until": until,
            "ended": False,
            "reset": None,
            "future": asyncio.get_running_loop().create_future(),
        }
        self.streams[sid] = s
        self.h3.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"sluice-h3-test"),
            ]
            + [(k.encode(), v.encode()) for k, v in headers],
            end_stream=True,
        )
        self.transmit()
        return s


def configuration(sni):
    c = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=sni)
    c.verify_mode = ssl.CERT_NONE
    return c


def parse_headers(values):
    out = []
    for h in values or []:
        k, _, v = h.partition(":")
        out.append((k.strip().lower(), v.strip()))
    return out


def summary(s, with_body):
    status = None
    headers = {}
    for k, v in s["headers"]:
        k, v = k.decode(), v.decode("latin-1")
        if k == ":status":
            status = int(v)
        else:
            headers[k] = v if k not in headers else headers[k] + ", " + v
    out = {
        "status": status,
        "headers": headers,
        "length": len(s["body"]),
        "sha256": hashlib.sha256(bytes(s["body"])).hexdigest(),
        "ended": s["ended"],
        "reset": s["reset"],
    }
    if with_body:
        out["body"] = bytes(s["body"]).decode("latin-1")
    return out


async def get(args):
    headers = parse_headers(args.header)
    authority = args.authority or f"localhost:{args.port}"
    async with connect(
        args.host, args.port, configuration=configuration(args.sni), create_protocol=Client
    ) as client:
        # The request streams the server lets this client open at once (read
        # before any: the limit rises as streams end).
        granted = client._quic._remote_max_streams_bidi
        if args.outage_at is not None:
            client.outage = (args.outage_at, args.outage)
        streams = [client.request(authority, p, headers) for p in args.paths]
        await asyncio.wait_for(
            asyncio.gather(*(s["future"] for s in streams)), timeout=args.timeout
        )
        if args.body_out:
            with open(args.body_out, "wb") as f:
                f.write(bytes(streams[0]["body"]))
        out = {
            "responses": [summary(s, args.with_body) for s in streams],
            "closed": client.closed,
            "max_streams_bidi": granted,
        }
        if args.linger:
            # Keep the connection open (the server must close it).
            print(json.dumps(out), flush=True)
            deadline = time.monotonic() + args.linger
            pings = 0
            while client.closed is None and time.monotonic() < deadline:
                if args.ping_ms:
                    pings += 1
                    client._quic.send_ping(pings)
                    client.transmit()
                    await asyncio.sleep(args.ping_ms / 1000)
                else:
                    await asyncio.sleep(0.05)
            out = {"closed_by_server": client.closed is not None}
        return out


async def vanish(args):
    authority = args.authority or f"localhost:{args.port}"
    async with connect(
        args.host, args.port, configuration=configuration(args.sni), create_protocol=Client
    ) as client:
        s = client.request(authority, args.paths[0], [], until=args.after)
        await asyncio.wait_for(s["future"], timeout=args.timeout)
        print(json.dumps({"received": s["received"]}), flush=True)
        # Gone: no CONNECTION_CLOSE, no more acknowledgements.
        os._exit(0)


def garbage(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(args.count):
        size = 1 + (i * 7919) % 1400
        payload = os.urandom(size)
        if i % 3 == 0:
            # Looks like a long-header Initial (first bit set, QUIC v1), then junk.
            payload = bytes([0xC0]) + b"\x00\x00\x00\x01" + os.urandom(max(size, 1200))
        sock.sendto(payload, (args.host, args.port))
    return {"sent": args.count}


def handshakes(args):
    socks = []
    now = time.time()
    for _ in range(args.count):
        conn = QuicConnection(configuration=configuration(args.sni))
        conn.connect((args.host, args.port), now=now)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        for data, addr in conn.datagrams_to_send(now=now):
            sock.sendto(data, (args.host, args.port))
        socks.append(sock)
    time.sleep(args.hold)
    return {"started": args.count}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["get", "vanish", "garbage", "handshakes"])
    p.add_argument("paths", nargs="*")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--authority")
    p.add_argument("--header", action="append")
    p.add_argument("--body-out")
    p.add_argument("--with-body", action="store_true")
    p.add_argument("--after", type=int, default=1 << 20)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--linger", type=float, default=0.0)
    p.add_argument("--ping-ms", type=float, default=0.0)
    p.add_argument("--outage-at", type=int)
    p.add_argument("--outage", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    if args.mode == "get":
        out = asyncio.run(get(args))
    elif args.mode == "vanish":
        out = asyncio.run(vanish(args))
    elif args.mode == "garbage":
        out = garbage(args)
    else:
        out = handshakes(args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
