"""The HTML report of the default scenario opens in headless Chromium: every plot renders, the page
makes no network request and logs no console error. Skipped, saying why, without Debian's chromium
(`apt-get install chromium`; .ci/run installs it) or the playwright package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runtime.analysis.report import report_html
from runtime.analysis.runs import analyze
from runtime.record.recording import record
from runtime.record.replay import open as open_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def test_the_default_scenarios_report_renders_in_headless_chromium(tmp_path: Path):
    record(Path("scenarios/marketplace.toml"), tmp_path / "run", until=60)
    analysis = analyze(open_run(tmp_path / "run"))
    page_file = tmp_path / "report.html"
    page_file.write_text(report_html([analysis]))
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request",
            lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None,
        )
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all(
            "img.plot",
            "els => els.map(e => ({alt: e.alt, ok: e.complete && e.naturalWidth > 0, w: "
            "e.naturalWidth}))",
        )
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    titles = [i["alt"] for i in images]
    assert titles[:2] == ["Wealth inequality", "Mean task price"]
    assert {
        "Volume",
        "Ledger convergence: oldest op a replica still lacks",
        "Synchronisation and tension",
        "Healer actions",
    } <= set(titles)
    assert all(i["ok"] and i["w"] >= 600 for i in images), images
    assert errors == [] and requests == []
    assert shot.stat().st_size > 50_000  # a real picture of a page full of plots
