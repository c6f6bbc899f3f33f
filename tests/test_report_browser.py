"""The report in a real headless browser: Debian's chromium driven by Playwright (never a browser
download). The pages load with no console errors, tables and figures render, and a screenshot is kept."""
import warnings
from pathlib import Path

import pytest

from bench.perf.report_fixture import make_results
from bench.report import build_report
from bench.report.figures import LayoutWarning

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (/usr/bin/chromium); "
                       "apt-get install -y --no-install-recommends chromium chromium-driver"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The fixture report, built with crowded tick labels as errors: every figure's drawn tick labels
    were measured (matplotlib's renderer, bench/report/figures.py) and keep at least 1 em apart."""
    root = tmp_path_factory.mktemp("browser")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        return build_report(make_results(root), root / "reports").parent


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:       # launch() gives chromium a fresh temporary profile
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(url, wait_until="load")
    return page, problems


@pytest.mark.parametrize("name", ["index.html", "suite-fixture.html", "runs.html", "published.html"])
def test_page_loads_cleanly_with_tables_and_figures(browser, site, name, tmp_path):
    page, problems = _open(browser, (site / name).as_uri())
    assert problems == []
    assert page.locator("table").count() >= 1 and page.locator("table thead th[scope=col]").count() >= 3
    images = page.locator("img")
    broken = page.evaluate("() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    if name == "suite-fixture.html":
        assert images.count() >= 9
        assert page.locator("text=Suite incomplete").count() == 1
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000         # kept under pytest's temporary folder for a person to look at
    page.close()


def test_a_provenance_link_lands_on_its_run(browser, site):
    page, problems = _open(browser, (site / "suite-fixture.html").as_uri())
    page.locator("a[href='runs.html#run-flow-ring8-mlp-s1']").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("runs.html#run-flow-ring8-mlp-s1")
    assert page.locator("#run-flow-ring8-mlp-s1").is_visible() and problems == []


# Per table frame: whether the table fits; else, scrolled to its left and to its right end, whether the
# element at the frame's left edge in every row is still that row's header, and whether the row's links to
# its runs' provenance lie inside the frame.
LAYOUT = """() => [...document.querySelectorAll('.table-wrap')].map(w => {
  const t = w.querySelector('table');
  if (t.scrollWidth <= w.clientWidth) return {fits: true};
  const rows = [];
  for (const end of [0, w.scrollWidth]) {
    w.scrollLeft = end;
    for (const tr of t.querySelectorAll('tbody tr')) {
      const th = tr.querySelector('th');
      window.scrollTo(0, window.scrollY + th.getBoundingClientRect().top - 300);      // the row on screen
      const frame = w.getBoundingClientRect(), r = th.getBoundingClientRect();
      const hit = document.elementFromPoint(frame.left + 2, r.top + r.height / 2);
      const links = [...tr.querySelectorAll('a[href^="runs.html#"]')].map(a => a.getBoundingClientRect());
      rows.push({header: th.contains(hit), links: links.every(l => l.left >= frame.left && l.right <= frame.right)});
    }
  }
  return {fits: false, overflow: getComputedStyle(w).overflowX, scrolled: w.scrollLeft > 0, rows: rows,
          caption: t.querySelector('caption').textContent.slice(0, 60)};
})"""


@pytest.mark.parametrize("name", ["index.html", "suite-fixture.html", "runs.html", "published.html"])
def test_tables_fit_a_1400px_window_or_scroll_in_their_frame_with_the_first_column_in_view(browser, site, name):
    page, problems = _open(browser, (site / name).as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400      # the page itself never scrolls sideways
    frames = page.evaluate(LAYOUT)
    for f in frames:
        if not f["fits"]:
            assert f["overflow"] == "auto" and f["scrolled"], f
            assert all(r["header"] for r in f["rows"]), f"{f['caption']}: the first column scrolled away"
            assert all(r["links"] for r in f["rows"]), f"{f['caption']}: provenance links out of view"
    if name == "suite-fixture.html":          # the toys' full metric set is wider than the window
        assert any(not f["fits"] for f in frames)
    assert problems == []
    page.close()
