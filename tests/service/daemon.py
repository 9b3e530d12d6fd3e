"""Run `edgecl serve` as a subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Daemon:
    """``with Daemon(data_dir, env) as d:`` starts the daemon and waits until it is ready.

    On exit a still-running daemon gets SIGTERM (then SIGKILL after 10 s).
    """

    def __init__(
        self, data_dir: Path, env: dict[str, str], extra: list[str] | None = None,
        ready_timeout: float = 120.0,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "service", "serve", "--port", str(self.port),
            "--data-dir", str(data_dir), *(extra or []),
        ]  # fmt: skip
        self.env = env
        self.ready_timeout = ready_timeout
        self.log = data_dir.parent / f"daemon-{self.port}.log"
        self.process: subprocess.Popen[bytes]

    def __enter__(self) -> Daemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"daemon not ready in {self.ready_timeout} s:\n{self.log.read_text()}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# The fork server: imports the slow parts once (FastAPI, pydantic models, uvicorn), then
# forks one fresh process per start that runs `edgecl serve` (service.__main__.main) with
# its own arguments, environment and log. Nothing touches a data dir before the fork, and
# the server has no threads, so each child starts like a new daemon, minus the imports.
_FORK_SERVER = r"""
import json, os, sys, threading, traceback
import uvicorn.lifespan.on, uvicorn.loops.auto, uvicorn.protocols.http.auto
import service.app, service.bootstrap, service.commands.serve
from service.__main__ import main
assert threading.active_count() == 1, "the fork server must not have threads"
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "spawn":
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.environ.clear()
                os.environ.update(cmd["env"])
                code = main(cmd["args"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        reply = {"pid": pid}
    else:  # "wait": reap the child (blocking, or just look)
        got, status = os.waitpid(cmd["pid"], 0 if cmd["block"] else os.WNOHANG)
        reply = {"code": os.waitstatus_to_exitcode(status) if got else None}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


class ForkServer:
    """A process that has imported the daemon once and forks a fresh daemon per start.

    A daemon process costs seconds of imports on a small machine; a restart loop (kill -9
    twenty times) forks instead. ``close()`` (or the context manager) SIGKILLs any daemon
    still running (a failed test leaves none behind) and ends the server.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.running: set[int] = set()

    def _call(self, **cmd: object) -> dict[str, object]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.process.wait(5)})")
        reply: dict[str, object] = json.loads(line)
        return reply

    def spawn(self, args: list[str], env: dict[str, str], log: Path) -> int:
        pid = self._call(op="spawn", args=args, env=env, log=str(log))["pid"]
        assert isinstance(pid, int)
        self.running.add(pid)
        return pid

    def exit_code(self, pid: int, block: bool) -> int | None:
        """The child's exit code (negative: killed by that signal); None while it runs."""
        code = self._call(op="wait", pid=pid, block=block)["code"]
        assert code is None or isinstance(code, int)
        if code is not None:
            self.running.discard(pid)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            for pid in list(self.running):
                if self.exit_code(pid, block=False) is None:
                    os.kill(pid, signal.SIGKILL)  # a child not yet reaped: still ours
                    self.exit_code(pid, block=True)
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForkedDaemon(Daemon):
    """A :class:`Daemon` forked by a :class:`ForkServer` (same arguments, log and context
    manager), with ``start()``/``wait_ready()`` split so tests can kill it at any moment.

    ``env`` is the whole environment of the daemon (as for :class:`Daemon`).
    """

    def __init__(
        self, server: ForkServer, data_dir: Path, env: dict[str, str],
        extra: list[str] | None = None, ready_timeout: float = 60.0,
    ) -> None:  # fmt: skip
        super().__init__(data_dir, env, extra, ready_timeout)
        self.server = server
        self.pid = 0
        self.code: int | None = None

    def start(self) -> ForkedDaemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid = self.server.spawn(self.args[3:], self.env, self.log)
        return self

    def poll(self) -> int | None:
        if self.code is None:
            self.code = self.server.exit_code(self.pid, block=False)
        return self.code

    def wait(self) -> int:
        if self.code is None:
            self.code = self.server.exit_code(self.pid, block=True)
        assert self.code is not None
        return self.code

    def wait_ready(self) -> ForkedDaemon:
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.poll() is not None:
                    raise RuntimeError(f"daemon exited early:\n{self.log.read_text()}")
                try:
                    if client.get(f"{self.url}/health/ready").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"daemon not ready in {self.ready_timeout} s:\n{self.log.read_text()}")

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> int:
        """SIGKILL, like a power cut for the process (the OS page cache survives)."""
        self.signal(signal.SIGKILL)
        return self.wait()

    def stop(self) -> int:
        """SIGTERM (drain, checkpoint, exit 0); SIGKILL if that takes over 10 s."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.kill()

    def __enter__(self) -> ForkedDaemon:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def identity_env(dim: int, **settings: str) -> dict[str, str]:
    """The environment of a fast test daemon: identity backbone on ``dim``-d features, ncm,
    a small reservoir store, no probe (it holds acknowledged samples back from the
    counts), info logs; ``settings`` are ``EDGECL_<NAME>`` overrides (``probe_share="0.1"``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")}
    env.update(
        OPENBLAS_NUM_THREADS="1",
        EDGECL_BACKBONE="identity",
        EDGECL_LATENT_DIM=str(dim),
        EDGECL_STRATEGY__NAME="ncm",
        EDGECL_STORE__KIND="reservoir",
        EDGECL_STORE__MAX_BYTES=str(256 << 10),
        EDGECL_MAX_WAIT_MS="1",
        EDGECL_LOG_LEVEL="info",
        EDGECL_PROBE_SHARE="0",
    )
    env.update({f"EDGECL_{name.upper()}": value for name, value in settings.items()})
    return env
