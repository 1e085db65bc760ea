"""A page opened in a real headless Chromium (Debian's chromium package), as a person would.

Run as root, so without Chromium's sandbox; every background service off
(no network access beyond the page itself, which docker-fw's html never
asks for anyway); a throwaway profile; a deadline for each run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(extra: list[str], page: str, timeout: float) -> subprocess.CompletedProcess:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium not found (Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="dfw-chromium-") as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *extra, "file://" + os.path.abspath(page)],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )


def dump_dom(page: str, timeout: float = 90.0) -> str:
    """The DOM of PAGE once Chromium has rendered it (its serialised HTML)."""
    result = _run(["--dump-dom"], page, timeout)
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def screenshot(page: str, png: str, size: str = "1200,800", timeout: float = 90.0) -> None:
    result = _run([f"--screenshot={png}", f"--window-size={size}"], page, timeout)
    if result.returncode != 0 or not os.path.exists(png):
        raise RuntimeError(f"chromium --screenshot failed ({result.returncode}): {result.stderr[-2000:]}")
