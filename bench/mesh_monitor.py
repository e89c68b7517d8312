#!/usr/bin/python3
"""Attaches to a redis-server with MONITOR and accounts for what it sees,
for bench/mesh.sh's accounting runs.

    mesh_monitor.py PORT OUT.json

Until SIGTERM (or SIGINT): counts the commands clients sent by name
("top"), the calls made inside scripts ("inner", MONITOR's "[N lua]"
lines), and for each request id the arrival of its EVAL/EVALSHA calls: the
join latency of a pair is the second call's timestamp minus the first's
(MONITOR's timestamps: Redis's own clock for both halves). A request id is
the first 32-hex-digit token of the call (nginx's $request_id), else its
first key. INFO and MONITOR (the bench's own) are left out. Writes OUT.json
{"top": {cmd: n}, "inner": {cmd: n}, "join_ms": [..], "unpaired": n,
"lines": n} and exits 0. Only ever connects to 127.0.0.1.
"""
import json
import re
import signal
import socket
import sys

LINE = re.compile(rb'^\+(\d+\.\d+) \[\d+ ([^\]]+)\] "([^"]+)"(.*)$')
RID = re.compile(rb'(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])')
ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
SKIP = {b"info", b"monitor"}


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop()


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    port, out = int(argv[0]), argv[1]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    top, inner, first, joins = {}, {}, {}, []
    lines = 0
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(None)
    f = s.makefile("rb", buffering=1 << 20)
    try:
        s.sendall(b"MONITOR\r\n")
        if f.readline().strip() != b"+OK":
            print("MONITOR refused", file=sys.stderr)
            return 1
        print("OK", flush=True)  # attached: bench/mesh.sh waits for this line
        for raw in f:
            lines += 1
            m = LINE.match(raw[:4096])
            if not m:
                continue
            ts, src, cmd, rest = float(m.group(1)), m.group(2), m.group(3).lower(), m.group(4)
            if cmd in SKIP:
                continue
            name = cmd.decode("latin-1")
            if src == b"lua":
                inner[name] = inner.get(name, 0) + 1
                continue
            top[name] = top.get(name, 0) + 1
            if cmd not in (b"evalsha", b"eval"):
                continue
            rid = RID.search(rest)
            if rid:
                key = rid.group(0)
            else:
                args = ARG.findall(rest)  # sha/script, numkeys, first key
                key = args[2] if len(args) > 2 else rest
            t0 = first.pop(key, None)
            if t0 is None:
                first[key] = ts
            else:
                joins.append((ts - t0) * 1000.0)
    except (Stop, OSError):
        pass
    finally:
        with open(out, "w") as fh:
            json.dump({"top": top, "inner": inner, "join_ms": joins, "unpaired": len(first),
                       "lines": lines}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
