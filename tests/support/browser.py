"""A real browser for the tests: Debian's headless Chromium (/usr/bin/chromium),
driven by Playwright from PyPI with that executable (Playwright's own browser
download is never used). scripts/install-deps.sh installs both.

Run inside the test's namespace (`ip netns exec NS python3 browser.py`); it
reads one JSON command a line on stdin and answers each with one JSON line
on stdout, {"ok": true, "value": ...} or {"ok": false, "error": "..."}:

  {"cmd": "goto", "url": U}                  -> the HTTP status
  {"cmd": "wait", "js": E, "timeout_ms": N}  -> when E is truthy in the page
  {"cmd": "eval", "js": E}                   -> E's value
  {"cmd": "screenshot", "path": P}           -> the whole page as a PNG at P
  {"cmd": "console"}                         -> every console message, page
                                                error and failed request so far
  {"cmd": "quit"}

The first line it prints says whether the browser started. It ends when
stdin closes, and with it Chromium, whose fresh profile is removed.
"""

import json
import os
import shutil
import sys
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
# Root on a machine with no network outside: no sandbox (root), nothing
# that phones home or updates itself, no QUIC.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def say(**answer):
    print(json.dumps(answer), flush=True)


def wait(page, js, timeout):
    """Evaluates `js` every 50 ms until it is truthy. (Not Playwright's
    wait_for_function: its polling evals a string inside the page, which
    the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout}s: {js}")
        time.sleep(0.05)


def serve(page, log):
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            c = cmd["cmd"]
            if c == "goto":
                r = page.goto(cmd["url"])
                say(ok=True, value=r.status if r else None)
            elif c == "wait":
                wait(page, cmd["js"], cmd["timeout_ms"] / 1000)
                say(ok=True, value=None)
            elif c == "eval":
                say(ok=True, value=page.evaluate(cmd["js"]))
            elif c == "screenshot":
                page.screenshot(path=cmd["path"], full_page=True)
                say(ok=True, value=cmd["path"])
            elif c == "console":
                say(ok=True, value=log)
            elif c == "quit":
                say(ok=True, value=None)
                return
            else:
                say(ok=False, error=f"unknown command {c!r}")
        except Exception as e:  # the test reads the message and fails
            say(ok=False, error=f"{type(e).__name__}: {e}")


def main():
    if not os.access(CHROMIUM, os.X_OK):
        say(ok=False, error=f"no Chromium at {CHROMIUM}: run scripts/install-deps.sh "
                            "(Debian's chromium package)")
        return 1
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        say(ok=False, error=f"no Playwright for {sys.executable} ({e}): "
                            "run scripts/install-deps.sh (playwright from PyPI)")
        return 1
    profile = tempfile.mkdtemp(prefix="udplb-chromium-")
    log = []
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                viewport={"width": 1480, "height": 900})
            page = ctx.new_page()
            page.on("console", lambda m: log.append({"type": m.type, "text": m.text}))
            page.on("pageerror", lambda e: log.append({"type": "pageerror", "text": str(e)}))
            page.on("requestfailed", lambda r: log.append(
                {"type": "requestfailed", "text": f"{r.url}: {r.failure}"}))
            say(ok=True, value=None)
            serve(page, log)
            ctx.close()
    except Exception as e:
        say(ok=False, error=f"starting Chromium: {type(e).__name__}: {e}")
        return 1
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
