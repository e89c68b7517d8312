"""A test-only resolver for the proxy: tests/shim/resolve_shim.c preloaded
into our processes (LD_PRELOAD) answers getaddrinfo() for the names in a
hosts file of the test's own, in the order given; every other name and
every IP literal goes to the real resolver. The product binary is the same
one every other test runs; only its environment differs.

Fixture `hosts`: .set({"app.test": ["127.0.0.2", "127.0.0.1"]}) rewrites the
file (atomically: the shim reads it on every lookup, so a running proxy sees
the change on its next resolution); a name mapped to [] fails to resolve,
and ("delay", MS) in a name's list makes its lookups that slow. .env is what
a process needs to use it (ASan accepts a preload first in the library list
only with verify_asan_link_order=0; valgrind keeps LD_PRELOAD for its client).
"""
import os
import tempfile

import pytest

from conftest import BUILD

SHIM = os.path.join(BUILD, "tests", "resolve_shim.so")


class HostsFile:
    def __init__(self, directory):
        self.path = os.path.join(directory, "hosts")
        self.set({})
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.env = {"LD_PRELOAD": SHIM, "RESOLVE_SHIM_HOSTS": self.path,
                    "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"}

    def set(self, names):
        lines = []
        for name, addrs in names.items():
            words = [name]
            for a in addrs:
                words.append("delay=%d" % a[1] if isinstance(a, tuple) else a)
            lines.append(" ".join(words))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path))
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.path)


@pytest.fixture
def hosts():
    assert os.path.exists(SHIM), "%s is not built (make integration builds it)" % SHIM
    d = tempfile.mkdtemp(prefix="st-hosts-")
    yield HostsFile(d)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)
