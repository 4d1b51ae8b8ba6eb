"""Loopback ports for servers the tests start.

A server in the test's own process binds port 0 and keeps the socket (`loopback_socket`, which
`tests.support.server.serve_asgi` uses): the kernel never hands that port to anyone else while
the socket is open.

A server in a child process (`billing-bot serve --port`) must bind the port itself, so the test
picks one first (`free_port`). A port 0 probe closed before the child binds it could be taken in
between: the kernel hands out the same ephemeral range to every outgoing connection (each
PostgreSQL connection, each HTTP request) and to the probes of the other pytest-xdist workers.
`free_port` therefore picks from below the ephemeral range, from a block of ports that belongs to
this worker alone, and skips any port something already holds.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOWEST = 10000  # below this, ports are more likely to belong to a service of the machine
BLOCK = 400  # ports per worker: more than the processes a worker's tests start at once
EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def loopback_socket() -> socket.socket:
    """A listening-ready TCP socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds and no other test process will hand out."""
    for port in itertools.islice(_ports, BLOCK):
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in this worker's block ({BLOCK} tried)")


def worker_block(worker: str, ephemeral_low: int) -> range:
    """The ports for pytest-xdist worker `worker` ("gw3"; "" outside xdist): one block each,
    between LOWEST and the first ephemeral port."""
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    blocks = (ephemeral_low - LOWEST) // BLOCK
    if blocks < 1:
        raise RuntimeError(f"no room for test ports below the ephemeral range ({ephemeral_low})")
    start = LOWEST + (index % blocks) * BLOCK
    return range(start, start + BLOCK)


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; other systems start theirs higher


def _bindable(port: int) -> bool:
    # SO_REUSEADDR as uvicorn sets it: a port an earlier server left in TIME_WAIT is usable.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# In turn through the block, so a port comes back only after all the others have been used.
_ports: Iterator[int] = itertools.cycle(
    worker_block(os.environ.get("PYTEST_XDIST_WORKER", ""), _ephemeral_low())
)
