"""A real-browser test: JupyterLab + Chromium run the fusion notebook and move a weight slider.

Run with ``make browser-test`` (installs Debian's chromium and the playwright package when
missing; never ``playwright install``). Skips with a clear message where chromium or playwright
cannot be had. Saves screenshots to ``build/browser/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUT = ROOT / "build" / "browser"
NOTEBOOK = "05_fusion.ipynb"

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (make browser-test does)")
if not Path(CHROMIUM).exists():
    pytest.skip("no chromium, so the real-browser test is skipped: run `make browser-test` "
                "(it installs Debian's chromium) or `apt-get install -y chromium`", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab():
    tmp = Path(tempfile.mkdtemp(prefix="mmcourse-lab-"))
    token, port = "mmcourse-test", free_port()
    settings = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "MMCOURSE_QUICK": "1", "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "IPYTHONDIR": str(tmp / "ipython"),
           "MPLCONFIGDIR": str(tmp / "mpl"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--notebook-dir={ROOT / 'notebooks'}",
           f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    server = subprocess.Popen(cmd, env=env, stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail(f"JupyterLab did not start; see {tmp / 'server.log'}")
    yield url, token
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_fusion_notebook_runs_and_weight_slider_changes_the_readout(lab):
    url, token = lab
    OUT.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        idle = page.locator(".jp-StatusBar-TextItem:has-text('| Idle')")
        expect(idle).to_be_visible(timeout=120_000)
        page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
        readout = page.locator(".widget-html:has-text('test accuracy')").first
        expect(readout).to_be_visible(timeout=300_000)  # the notebook reached the panel
        expect(idle).to_be_visible(timeout=300_000)
        readout.scroll_into_view_if_needed()
        before = readout.inner_text()
        page.screenshot(path=str(OUT / "05_fusion-before.png"))
        handle = page.locator(".widget-slider:has(.widget-label:text-is('w_audio')) .noUi-handle").first
        handle.focus()
        for _ in range(4):
            handle.press("ArrowRight")  # 0.50 → 0.70 in steps of 0.05
        expect(readout).to_contain_text("audio=0.70", timeout=10_000)  # each key press round-trips
        after = readout.inner_text()
        page.screenshot(path=str(OUT / "05_fusion-after.png"))
        browser.close()
    assert "audio=0.70" in after and after != before
