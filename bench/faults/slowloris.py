#!/usr/bin/python3
"""Slowloris clients for the fault suite (127.0.0.1 only), in their own
process so the measuring client of the suite does not share their GIL.

    slowloris.py PORT N [--interval 1.0]

Opens N connections, sends a request line and Host on each, then one more
header line on each every interval seconds, never the blank line that ends
the head. Prints "ready N" once all are connected. Runs until SIGTERM.
"""
import argparse
import resource
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    socks = []
    for _ in range(a.n):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        s.setblocking(False)
        s.send(b"POST /slow HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    print("ready %d" % len(socks), flush=True)
    k = 0
    while not stop:
        time.sleep(a.interval)
        k += 1
        for i, s in enumerate(socks):
            try:
                s.send(b"X-Slow-%d: %d\r\n" % (i, k))
            except OSError:
                pass
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
