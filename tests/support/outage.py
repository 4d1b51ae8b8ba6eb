"""The database made unusable under a running bot, each way as honestly as a test can:

unwritable(path)    a SQLite file (and its -wal) made read-only: chmod, and for root, whom
                    modes do not stop, the immutable attribute (chattr +i). Writes through
                    open connections fail with SQLITE_IOERR_WRITE, new ones SQLITE_READONLY.
                    The -shm file is left alone: SQLite maps it into memory, and an
                    immutable mapping kills the process with SIGBUS.
FullDisk            while `full`, every SQLite connection checked out gets `PRAGMA
                    max_page_count` at its file's size, so SQLite answers SQLITE_FULL
                    "database or disk is full"
                    (https://www.sqlite.org/pragma.html#pragma_max_page_count).
TcpProxy            PostgreSQL behind a loopback proxy: `cut()` closes every connection and
                    refuses new ones (what a server gone away looks like), `mend()` listens
                    again on the same port. It runs in threads of its own, so the bot's event
                    loop has no task of the proxy's to wait for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import Pool


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Nobody may write the SQLite file `path` or its write-ahead log inside the block."""
    targets = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    modes = {p: p.stat().st_mode for p in targets}
    immutable: list[Path] = []
    try:
        for target in targets:
            target.chmod(modes[target] & 0o555)
            if os.geteuid() == 0:
                done = subprocess.run(["chattr", "+i", str(target)], capture_output=True)
                if done.returncode != 0:
                    pytest.skip("running as root, where only chattr +i makes a file read-only")
                immutable.append(target)
        yield
    finally:
        for target in immutable:
            subprocess.run(["chattr", "-i", str(target)], check=True)
        for target, mode in modes.items():
            target.chmod(mode)


class FullDisk:
    """While `full`, every SQLite connection checked out of any pool finds the disk full; once
    not, it gets SQLite's own limit back. Listens while its `installed()` block runs."""

    DEFAULT_MAX_PAGES = 4294967294  # SQLite's own limit

    def __init__(self) -> None:
        self.full = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[FullDisk]:
        sa.event.listen(Pool, "checkout", self._checkout)
        try:
            yield self
        finally:
            sa.event.remove(Pool, "checkout", self._checkout)

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if "sqlite" not in type(dbapi_connection).__module__:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA page_count")
            (pages,) = cursor.fetchone()
            limit = int(pages) if self.full else self.DEFAULT_MAX_PAGES
            cursor.execute(f"PRAGMA max_page_count = {limit}")
        finally:
            cursor.close()


class TcpProxy:
    """127.0.0.1:`port` forwarded to `target`, until cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def url(self, database_url: str) -> str:
        """`database_url` through the proxy."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def mend(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def proxied(database_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A PostgreSQL `database_url` through a `TcpProxy`, cut when the block ends."""
    url = make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.mend()
    try:
        yield proxy.url(database_url), proxy
    finally:
        proxy.cut()


class Unreachable:
    """A database the bot cannot connect to while `cut`, on either backend:

    SQLite      its folder moved away, so opening the file fails (SQLITE_CANTOPEN "unable to
                open database file"); connections opened before stay usable, so the bot's
                pool must be emptied after the cut (`engine.dispose()`), as a restart would.
    PostgreSQL  a `TcpProxy` cut: open connections closed, new ones refused.
    """

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self._proxy: TcpProxy | None = None
        self._stack = contextlib.ExitStack()
        if database_url.startswith("sqlite"):
            self.folder = tmp_path / "data"
            self.folder.mkdir()
            self.url = f"sqlite:///{self.folder / 'bot.db'}"
        else:
            self.url, self._proxy = self._stack.enter_context(proxied(database_url))

    def cut(self) -> None:
        if self._proxy is not None:
            self._proxy.cut()
        else:
            self.folder.rename(self.folder.with_name("data-away"))

    def mend(self) -> None:
        if self._proxy is not None:
            self._proxy.mend()
        else:
            self.folder.with_name("data-away").rename(self.folder)

    def close(self) -> None:
        self._stack.close()
