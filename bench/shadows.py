#!/usr/bin/python3
"""Misbehaving shadow servers for the tee benchmark (127.0.0.1 only).

    shadows.py blackhole PORT [--max-conns N]
        Accepts connections, reads and discards what arrives, never answers.
        Holds at most N connections (default 50000, further limited by the fd
        limit); past that it stops accepting, so new connects queue in the
        kernel backlog and then hang: still a blackhole, never a reset.

    shadows.py delay PORT [--delay-ms 200] [--body JSON]
        HTTP/1.1 keep-alive server answering every request with a fixed JSON
        body after the delay (timer based: many requests wait at once). Bodies
        are read by Content-Length (no chunked requests: the bench sends GETs).
        The fallback slow shadow when nginx's echo module is missing.

Both run until SIGTERM/SIGINT; the bench script stops them.
"""
import argparse
import asyncio
import resource
import selectors
import signal
import socket
import sys

DEFAULT_BODY = '{"id":42,"model":"bench","scores":[0.12,0.34,0.54],"ok":true}'
MAX_HEAD = 64 * 1024


def raise_fd_limit():
    """Raises the soft fd limit to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def blackhole(port, max_conns, stop):
    """Accepts up to max_conns connections and reads from them forever.
    At the cap the listener leaves the selector (nothing is closed), so
    further connects wait in the backlog instead of being reset."""
    sel = selectors.DefaultSelector()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ)
    held = 0
    listening = True
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            if sock is lsock:
                try:
                    conn, _ = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # EMFILE and friends: stop accepting for now
                    sel.unregister(lsock)
                    listening = False
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                held += 1
                if held >= max_conns and listening:
                    sel.unregister(lsock)
                    listening = False
                continue
            try:
                data = sock.recv(65536)  # discard, never answer
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                held -= 1
                if not listening and held < max_conns:
                    sel.register(lsock, selectors.EVENT_READ)
                    listening = True
    return 0


def parse_head(head):
    """Returns (content_length, keep_alive) of one request head (bytes)."""
    lines = head.split(b"\r\n")
    version = lines[0].rsplit(b" ", 1)[-1] if lines else b"HTTP/1.1"
    length = 0
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value or b"0")
        elif name == b"connection":
            keep_alive = value == b"keep-alive" if version != b"HTTP/1.1" else value != b"close"
    return length, keep_alive


async def delay_server(port, delay_s, body):
    payload = body.encode()
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(payload)) + payload

    async def on_conn(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_HEAD:
                    break
                length, keep_alive = parse_head(head[:-4])
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(delay_s)
                writer.write(response)
                await writer.drain()
                if not keep_alive:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError,
                ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", port, backlog=4096, limit=MAX_HEAD)
    async with server:
        await server.serve_forever()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("blackhole", "delay"))
    ap.add_argument("port", type=int)
    ap.add_argument("--max-conns", type=int, default=50000)
    ap.add_argument("--delay-ms", type=int, default=200)
    ap.add_argument("--body", default=DEFAULT_BODY)
    args = ap.parse_args(argv)
    if not 0 < args.port < 65536:
        ap.error("port out of range")
    limit = raise_fd_limit()
    if args.mode == "blackhole":
        stop = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.append(1))
        try:
            return blackhole(args.port, max(1, min(args.max_conns, limit - 64)), stop)
        except OSError as e:
            print("shadows.py: blackhole on port %d: %s" % (args.port, e), file=sys.stderr)
            return 1
    return asyncio.run(serve_until_signal(delay_server(args.port, args.delay_ms / 1000.0, args.body)))


async def serve_until_signal(coro):
    """Runs coro until it fails (returns 1) or SIGTERM/SIGINT arrives (0)."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except OSError as e:
        print("shadows.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
