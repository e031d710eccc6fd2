"""The documentation site builds with ``mkdocs build --strict``: no warning, no error.

Strict mode turns every warning into a failure: a link to a page or an anchor that does not exist,
a page missing from the navigation, a ``:::`` reference mkdocstrings cannot resolve, a marker of
``docs/hooks.py`` naming a file that does not exist. The site is written to a temporary folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")


@pytest.mark.skipif(
    not MKDOCS.exists(), reason="mkdocs is not installed beside this Python (the dev extra)"
)
def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{output[-4000:]}"
    problems = [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not problems, "\n".join(problems)
    assert (site / "index.html").is_file() and (
        site / "design" / "architecture" / "index.html"
    ).is_file()
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="getting-started/"' in home or 'href="getting-started/index.html"' in home, (
        "the README's links into docs/ are not rewritten for the site"
    )


def test_the_readme_is_a_front_door_whose_links_work_on_github_and_in_the_site():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert local and all(t.startswith("docs/") or t == "CHANGELOG.md" for t in local), local
    assert not [t for t in local if not (ROOT / t).is_file()]
