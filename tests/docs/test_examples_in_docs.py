"""Every file and command in the tutorials and how-to pages is executed.

A page's fenced blocks with ``title="NAME"`` are written to a fresh folder as NAME; then each
``$ agora ...`` line of its ``console`` blocks runs there, in order, and must exit 0 (or the code
its trailing ``# exit N`` comment names). Python blocks without a title run as scripts in that
folder. Pages: the README (the site's home page), the getting-started page, the tutorials and the
how-to pages.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    ROOT / "docs" / "getting-started.md",
    *sorted((ROOT / "docs" / "tutorials").glob("*.md")),
    *sorted((ROOT / "docs" / "howto").glob("*.md")),
]
# Pages that run an optional extra: skipped, and saying so, where the extra is not installed.
EXTRAS = {"sweeps-and-ray": "ray"}
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(page: Path) -> list[tuple[str, str | None, str]]:
    """(language, title or None, text) of each fenced block, in order."""
    out = []
    for lang, info, text in FENCE.findall(page.read_text()):
        title = re.search(r'title="([^"]+)"', info)
        out.append((lang, title.group(1) if title else None, text))
    return out


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_pages_files_and_commands_run(page, tmp_path):
    if (extra := EXTRAS.get(page.stem)) and importlib.util.find_spec(extra) is None:
        pytest.skip(f"{page.name} runs the [{extra}] extra, which is not installed")
    for target in ("scenarios",):  # pages may name the shipped scenarios
        (tmp_path / target).symlink_to(ROOT / target)
    ran = 0
    for lang, title, text in blocks(page):
        if title is not None:
            (tmp_path / title).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / title).write_text(text)
        elif lang == "console":
            for line in text.splitlines():
                if not line.startswith("$ "):
                    continue
                words = shlex.split(line[2:], comments=True)
                assert words[0] == "agora", f"{page.name}: only agora commands run here: {line}"
                expected = int(m.group(1)) if (m := EXIT.search(line)) else 0
                done = _run([sys.executable, "-m", "runtime.cli", *words[1:]], tmp_path)
                assert done.returncode == expected, (
                    f"{page.name}: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                )
                assert "Traceback" not in done.stderr, f"{page.name}: {line}\n{done.stderr[-2000:]}"
                ran += 1
        elif lang == "python":
            script = tmp_path / "snippet.py"
            script.write_text(text)
            done = _run([sys.executable, str(script)], tmp_path)
            assert done.returncode == 0, (
                f"{page.name}: a Python block failed\n{done.stderr[-2000:]}"
            )
            ran += 1
    assert ran or not any(
        lang in ("console", "python") for lang, title, _ in blocks(page) if title is None
    )
