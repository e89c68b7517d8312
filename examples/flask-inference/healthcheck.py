#!/usr/bin/python3
"""Probe for the app's GET /health, over TCP or a Unix socket.

  healthcheck.py [ADDRESS]    ADDRESS: HOST:PORT or unix:PATH (default $BIND)

The stable pod's app listens on a Unix socket only (nothing on the pod
network), so the kubelet cannot httpGet it: its probes exec this.
Exit status: 0 when /health answers 200 with {"status": "ok"}, 1 otherwise
(one line on stderr says why), 2 bad arguments.
"""
import http.client
import json
import os
import socket
import sys

TIMEOUT_S = 2.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def connection(address, timeout=TIMEOUT_S):
    """An http.client connection to HOST:PORT or unix:PATH; ValueError for
    anything else."""
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        if not path:
            raise ValueError("unix: needs a socket path")
        return UnixHTTPConnection(path, timeout)
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT or unix:PATH, got %r" % address)
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)


def main(argv):
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    address = argv[0] if argv else os.environ.get("BIND") or "127.0.0.1:5000"
    try:
        conn = connection(address)
    except ValueError as exc:
        print("healthcheck: %s" % exc, file=sys.stderr)
        return 2
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        print("healthcheck: %s: %s" % (address, exc or type(exc).__name__), file=sys.stderr)
        return 1
    finally:
        conn.close()
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        status = None
    if resp.status != 200 or status != "ok":
        print("healthcheck: %s: GET /health: %d %s" % (address, resp.status, body[:200]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
