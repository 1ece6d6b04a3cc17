#!/usr/bin/env python3
"""Screenshots of each dashboard view for docs/dashboard.md (docs/dashboard/*.png).

Starts a runtime (tests/apps/basic as ``web``, the entrypoint, and ``api``, a
process worker, with tracing on), opens the page ``watt admin`` prints in
Debian's headless Chromium through Playwright, sends some traffic (mesh calls,
a few of them failing) and saves one PNG per view, plus the applications view
at a phone's width.  Run from the repository root:
``.venv/bin/python scripts/dashboard-screenshots.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "dashboard"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _traffic(url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client:
        n = 0
        while not stop.is_set():
            path = "/boom" if n % 10 == 0 else "/whoami"
            client.get(url + "/mesh", params={"target": "api.plt.local", "path": path},
                       headers={"x-request-id": f"demo-{n}"})
            n += 1
            time.sleep(0.04)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="wshot-", dir="/tmp"))
    xdg = work / "x"
    xdg.mkdir(mode=0o700)
    apps = ROOT / "tests" / "apps" / "basic"
    (work / "watt.json").write_text(json.dumps({
        "server": {"port": 0}, "entrypoint": "web", "telemetry": {"serviceName": "demo"},
        "applications": [
            {"id": "web", "path": str(apps), "app": "main:app", "env": {"APP_NAME": "web"},
             "workers": 2},
            {"id": "api", "path": str(apps), "app": "main:app", "env": {"APP_NAME": "api"},
             "isolation": "process"}]}))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
    proc = subprocess.Popen([sys.executable, "-m", "watt.cli", "start", "-c",
                             str(work / "watt.json")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()
    try:
        for line in proc.stdout:
            if match := re.search(r"running at (http://\S+)", line):
                url = match[1]
                break
        else:
            raise SystemExit("watt did not start")
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        link = subprocess.run([sys.executable, "-m", "watt.cli", "admin"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
        threading.Thread(target=_traffic, args=(url, stop), daemon=True).start()
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(link)
            page.locator("tr[data-app=api]").wait_for()
            page.wait_for_timeout(8000)  # some history for the charts
            for view in ("applications", "charts", "mesh", "logs", "traces"):
                page.click(f"nav a[href='#{view}']")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT / f"{view}.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 760},
                                     device_scale_factor=1)
            phone.goto(link)
            phone.locator("tr[data-app=api]").wait_for()
            phone.click("nav a[href='#charts']")
            phone.wait_for_timeout(3000)
            phone.screenshot(path=str(OUT / "phone.png"))
            browser.close()
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
