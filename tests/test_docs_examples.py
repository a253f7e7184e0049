"""Every example a user may copy runs: the README's and docs/' Python blocks, and every
docstring ``Example::`` of the packages, each executed as written (in a fresh interpreter, from a
scratch folder, so nothing a page writes lands in the checkout)."""
import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / "docs" / "*.md")))]
MODULES = sorted(os.path.relpath(p, ROOT) for pkg in ("tune_ext", "trainables")
                 for p in glob.glob(str(ROOT / pkg / "**" / "*.py"), recursive=True)
                 if "Example::" in open(p).read())


def _run(files, tmp_path, timeout=900):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "run_examples.py"),
                           *[str(ROOT / f) for f in files]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    if files == ["README.md"]:   # quiet: our lines and Ray's essentials (about 700 with Ray's defaults)
        printed = proc.stdout.splitlines() + proc.stderr.splitlines()
        assert len(printed) <= 40, "\n".join(printed[:60])
    return [line for line in proc.stdout.splitlines() if line.startswith("ok ")]


def test_every_page_has_examples_and_links_stay_inside_the_repository():
    assert "docs/schedulers.md" in PAGES and "docs/benchmark.md" in PAGES
    for page in PAGES:
        text = (ROOT / page).read_text()
        for link in __import__("re").findall(r"\]\(([^)#]+)", text):
            assert not link.startswith(("http:", "https:", "..")), f"{page} links outside: {link}"
            assert (ROOT / page).parent.joinpath(link).exists(), f"{page}: broken link {link}"


# README's example runs in every run; the docs pages and docstrings repeat what the parts' own
# tests cover (docs/trainables.md's block also runs, with stronger asserts, in test_byom) and take
# most of 15 minutes: they run with --slow.
@pytest.mark.parametrize("page", [p if p == "README.md" else pytest.param(p, marks=pytest.mark.slow)
                                  for p in PAGES])
def test_page_examples_run_as_written(page, tmp_path):
    ran = _run([page], tmp_path)
    assert len(ran) == (ROOT / page).read_text().count("```python")


@pytest.mark.slow
def test_docstring_examples_run_as_written(tmp_path):
    ran = _run(MODULES, tmp_path)
    expected = sum(open(ROOT / m).read().count("Example::") for m in MODULES)
    assert len(ran) == expected >= 15
