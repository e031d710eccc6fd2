"""The served world's dashboard in headless Chromium: the page loads, its charts update as ticks
pass, the operator's pause and resume work, no request leaves the machine and the console shows no
error. Skipped, saying why, without Debian's chromium (`apt-get install chromium`; .ci/run installs
it) or the playwright package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime.test_serve import ROOT, _up, free_port, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def test_the_dashboard_updates_pauses_and_resumes_in_headless_chromium(tmp_path: Path):
    import httpx

    port, tokens = free_port(), tmp_path / "tokens.txt"
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.cli", "serve"),
            str(ROOT / "scenarios" / "served_market.toml"),
            *("--out", str(tmp_path / "run"), "--port", str(port), "--realtime", "0.15"),
            *("--tokens", str(tokens), "--paused"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[str] = []
    outside: list[str] = []
    try:
        wait_until(lambda: _up(httpx, url) or server.poll() is not None, 120)
        admin = tokens.read_text().splitlines()[0].split()[1]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None
            )
            page.goto(url)
            assert "served_market" in page.title() + page.text_content("#title")
            page.fill("#admin", admin)  # the clock starts held: the operator lets it go
            page.click("#resume")
            points = "document.querySelector('#c-price').dataset.points"
            page.wait_for_function(f"Number({points} || 0) >= 3", timeout=60_000)
            first = int(page.evaluate(points))
            page.wait_for_function(f"Number({points}) > {first}", timeout=60_000)
            assert int(page.eval_on_selector("#c-hist", "e => e.dataset.bars")) == 20
            assert page.locator("#seats tr").count() == 4

            page.click("#pause")
            page.wait_for_function("document.querySelector('#state').textContent === 'paused'")
            wait_until(lambda: not httpx.get(f"{url}/api/v1/world").json()["tick_running"])
            held = httpx.get(f"{url}/api/v1/world").json()
            time.sleep(0.6)  # a paused clock holds between ticks
            assert httpx.get(f"{url}/api/v1/world").json()["tick"] == held["tick"]
            page.click("#resume")
            page.wait_for_function(
                f"Number(document.querySelector('#tick').textContent) > {held['tick'] + 1}",
                timeout=60_000,
            )
            # The operator opens a proposal; the table lists it once it opens.
            page.fill("#param", "fee_rate")
            page.fill("#value", "0.03")
            page.click("#propose")
            page.wait_for_function(
                "document.querySelector('#opmsg').textContent.includes('opens at')"
            )
            page.wait_for_function(
                "document.querySelector('#proposals').textContent.includes('fee_rate=0.03')",
                timeout=60_000,
            )
            page.fill("#admin", "not-the-token")
            page.click("#pause")
            page.wait_for_function("document.querySelector('#opmsg').textContent.includes('401')")
            browser.close()
    finally:
        if server.poll() is None:
            server.kill()
    # The one error: the browser's note of the 401 the wrong admin token was meant to get.
    assert [e for e in errors if "status of 401" not in e] == [], errors
    assert outside == [], outside
