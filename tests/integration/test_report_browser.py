"""report.html in a real browser (headless Chromium): the page's text and layout for a 4-run x 2-task grid."""

from __future__ import annotations

import html
import importlib
import json
import re
import shutil
import struct
import subprocess

import pytest

from tests.conftest import require
from tests.helpers_report import grid_plan

importlib.import_module("pandas")
importlib.import_module("matplotlib")

WIDTH = 1400
INSTALL = "apt-get install -y chromium"
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const r = {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
             images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
             text: document.body.textContent};
  const pre = document.createElement("pre");
  pre.id = "cruijff-check";
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={WIDTH},1000", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from cruijff.results.report import build_report

    root = grid_plan(tmp_path_factory.mktemp("grid"))
    return build_report(root)


def test_report_page_in_chromium(report, tmp_path):
    browser = _chromium()
    require(browser is not None, f"no headless Chromium to render report.html ({INSTALL})")
    page = report.html.read_text(encoding="utf-8")
    checked = tmp_path / "check.html"
    checked.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = _run(browser, "--dump-dom", checked.as_uri())
    found = re.search(r'<pre id="cruijff-check">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    r = json.loads(html.unescape(found.group(1)))
    assert r["innerWidth"] == WIDTH
    assert r["scrollWidth"] <= WIDTH, "the page scrolls sideways at 1400 px"
    assert r["images"] == len(report.plots) > 0 and r["broken"] == 0
    text = r["text"]
    for bad in (r"\bNone\b", r"<NA>", r"\bnan\b", r"\bNaN\b"):
        assert not re.search(bad, text), bad
    for run in ("lr1e-4_r8", "lr1e-4_r32", "lr1e-3_r8", "lr1e-3_r32", "smollm2 (base model)"):
        assert run in text
    assert "vs base [95% CI]" in text and "inspect view --log-dir" in text

    shot = tmp_path / "report.png"
    done = _run(browser, f"--screenshot={shot}", report.html.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", head[16:20])[0] == WIDTH
