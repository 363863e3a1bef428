"""Headless Chromium driven over the DevTools protocol on a pipe (no library, no port).

``render(path)`` opens a local HTML file, waits for its load event and returns the console
errors, each image's load state, every table's cell texts and, optionally, a PNG screenshot.
Chromium is found as ``chromium`` or ``chromium-browser`` on PATH (Debian: ``apt-get install
chromium``); :func:`find_chromium` returns None when it is absent, so tests can skip.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--remote-debugging-pipe"]

PAGE_STATE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
                                                 width: i.naturalWidth})),
  tables: Array.from(document.querySelectorAll('table')).map(t => ({
    css: t.className,
    rows: Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.textContent))}))
})"""


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Rendered:
    console_errors: list[str]
    images: list[dict[str, Any]]
    tables: list[dict[str, Any]]
    screenshot: bytes | None


class _Pipe:
    """The DevTools protocol over fds 3 (to Chromium) and 4 (from it), NUL-separated JSON."""

    def __init__(self, binary: str, profile: str) -> None:
        low_r, self.to_chrome = os.pipe()
        self.from_chrome, low_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4: lift the child's ends above 10 (so that moving
        # them onto 3 and 4 overwrites nothing), then a shell moves them there and execs
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (low_r, low_w))
        os.close(low_r)
        os.close(low_w)
        move = f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", move, "bash", binary, *FLAGS, f"--user-data-dir={profile}",
             "about:blank"], pass_fds=(child_r, child_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_r)
        os.close(child_w)
        self.next_id, self.buffer, self.events = 0, b"", []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)
        raise TimeoutError(method)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read())
        raise TimeoutError(method)

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)


def render(path: Path, screenshot: bool = False, width: int = 1200) -> Rendered:
    """Open ``path`` in a fresh headless Chromium profile and read the page back."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium")
    with tempfile.TemporaryDirectory(prefix="denoiserec-chromium-") as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=session)
            pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired")
            state = json.loads(pipe.send("Runtime.evaluate", {
                "expression": PAGE_STATE, "returnByValue": True}, session=session
                )["result"]["value"])
            shot = None
            if screenshot:
                data = pipe.send("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True}, session=session)["data"]
                shot = base64.b64decode(data)
            errors = _console_errors(pipe.events)
        finally:
            pipe.close()
    return Rendered(console_errors=errors, images=state["images"], tables=state["tables"],
                    screenshot=shot)


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif (event.get("method") == "Runtime.consoleAPICalled"
              and params.get("type") in ("error", "assert")):
            errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
        elif (event.get("method") == "Log.entryAdded"
              and params["entry"].get("level") == "error"):
            errors.append(params["entry"].get("text", ""))
    return errors
