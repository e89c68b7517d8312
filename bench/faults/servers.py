#!/usr/bin/python3
"""Upstreams for the fault suite (127.0.0.1 only): an HTTP/1.1 keep-alive
server answering every request with an inference-like JSON body.

    servers.py PORT [--variant primary|shadow] [--reset-every N] [--size N]

The body depends on the request's ?i=N (the wrk script numbers its
requests), so the primary and the shadow answer a mirrored request alike.
--variant shadow: the body differs in one score when N % 10 == 3 (diverged
    comparisons, stored samples).
--reset-every N: every Nth response is cut: the head (announcing the whole
    body) and half the body, then a reset (SO_LINGER 0).
--size: approximate body bytes (default 1500).

Request bodies are read by Content-Length (the proxy re-frames mirror copies
to Content-Length; wrk sends Content-Length). Runs until SIGTERM/SIGKILL.
"""
import argparse
import asyncio
import json
import signal
import socket
import struct


def make_body(size, variant, n):
    """The JSON body for request number n."""
    scores = [round(0.001 * ((i * 37) % 1000), 3) for i in range(max(8, size // 10))]
    if variant == "shadow" and n % 10 == 3:
        scores[1] = round(scores[1] + 0.25, 3)
    doc = {"model": "faults", "version": 7, "request": n % 1000,
           "predictions": [{"label": "cat", "scores": scores}]}
    return json.dumps(doc, separators=(",", ":")).encode()


class Handler(asyncio.Protocol):
    def __init__(self, opts, state):
        self.opts = opts
        self.state = state
        self.buf = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.transport.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            close = False
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    length = int(v.strip() or 0)
                elif k == "connection" and "close" in v.lower():
                    close = True
            total = end + 4 + length
            if len(self.buf) < total:
                return
            first = head.split("\r\n", 1)[0].split(" ")
            method = first[0]
            target = first[1] if len(first) > 1 else "/"
            i = 0
            q = target.find("i=")
            if q >= 0:
                digits = target[q + 2:].split("&", 1)[0]
                i = int(digits) if digits.isdigit() else 0
            del self.buf[:total]
            self.respond(method, i, close)
            if self.transport.is_closing():
                return

    def respond(self, method, i, close):
        self.state["n"] += 1
        n = self.state["n"]
        body = self.state["bodies"][i % len(self.state["bodies"])]
        head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                % (len(body), "Connection: close\r\n" if close else "")).encode()
        if self.opts.reset_every and n % self.opts.reset_every == 0:
            self.transport.write(head + body[: len(body) // 2])
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        self.transport.write(head + (b"" if method == "HEAD" else body))
        if close:
            self.transport.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--variant", default="primary", choices=("primary", "shadow"))
    ap.add_argument("--reset-every", type=int, default=0)
    ap.add_argument("--size", type=int, default=1500)
    opts = ap.parse_args()
    state = {"n": 0, "bodies": [make_body(opts.size, opts.variant, i) for i in range(1000)]}
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", opts.port))
    sock.listen(4096)
    server = loop.run_until_complete(loop.create_server(lambda: Handler(opts, state), sock=sock))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    server.close()


if __name__ == "__main__":
    main()
