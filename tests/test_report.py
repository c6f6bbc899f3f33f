"""``python -m bench.report`` over a fixture results folder: pages, content, honesty about gaps, no torch."""
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.perf.report_fixture import make_results


class Page(HTMLParser):
    """Collects images, links, table headers and visible text of one page."""

    def __init__(self, path: Path):
        super().__init__()
        self.imgs, self.hrefs, self.srcs, self.ths, self.ids, self.text = [], [], [], [], set(), []
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "th":
            self.ths.append(a)
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Build the report in a fresh interpreter as a user does (no --out: reports/ beside the results), with
    crowded tick labels as errors, and prove that it never imports torch. Its stderr goes to stderr.txt."""
    root = tmp_path_factory.mktemp("report")
    results = make_results(root)
    out = root / "reports"
    code = ("import sys, warnings; from bench.report.figures import LayoutWarning; "
            "warnings.simplefilter('error', LayoutWarning); from bench.report.__main__ import main; "
            "rc = main(['--results', sys.argv[1]]); assert 'torch' not in sys.modules, 'the report imported torch'; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(results)], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"Report: {(out / 'index.html').resolve()}"
    (root / "stderr.txt").write_text(proc.stderr)
    return results, out


def test_unreadable_records_are_named_on_the_terminal_too(report):
    results, _ = report
    lines = (results.parent / "stderr.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"bench.report: skipped {results / 'records' / 'broken-run.json'}: "
                                                   "not valid JSON"), lines
    assert lines[1].startswith(f"bench.report: skipped {results / 'perf' / 'broken.json'}: not a perf result"), lines


def test_timings_from_a_loaded_machine_are_marked(report):
    """The fixture's flow seed 2 on ring8 sampled at load 9.5 on 2 CPUs with 0.4 cores of its own."""
    _, out = report
    page = Page(out / "suite-fixture.html")
    ring8 = page.plain[page.plain.index("ring8: every evaluation point"):page.plain.index("digits: every")]
    rows = re.split(r" (?=(?:drifting|flow|diffusion|meanflow) s0)", ring8.split("Data-versus-data")[0])[1:]
    assert [r.split()[0] for r in rows if "⚠" in r] == ["flow"] * 5 and ring8.count("⚠") == 5, ring8
    assert "⚠ 5 of 11 evaluation point(s) were timed on a loaded machine (load average 9.5 on 2 CPUs" in page.plain
    assert "5 of 11 points were timed on a loaded machine" in " ".join(i["alt"] for i in page.imgs)
    digits = page.plain[page.plain.index("digits: every evaluation point"):]
    assert "⚠" not in digits
    runs = Page(out / "runs.html").plain
    assert runs.count("⚠") == 5 and runs.index("⚠") > runs.index("Evaluation points of flow-ring8-mlp-s2")


def test_pages_are_written(report):
    _, out = report
    assert sorted(p.name for p in out.glob("*.html")) == ["index.html", "published.html", "runs.html",
                                                          "suite-fixture.html", "suite-other-runs.html"]


def test_pages_are_self_contained_and_accessible(report):
    _, out = report
    for path in out.glob("*.html"):
        page = Page(path)
        assert all(s.startswith("data:image/png;base64,") for s in page.srcs), path
        assert not [h for h in page.hrefs if re.match(r"[a-z]+://", h)], f"{path} links outside the report"
        assert all(img.get("alt", "").strip() for img in page.imgs), f"{path}: an image without alt text"
        assert all(th.get("scope") in ("col", "row") for th in page.ths), f"{path}: a th without scope"
        for href in page.hrefs:                         # internal links resolve
            file, _, anchor = href.partition("#")
            target = out / file if file else path
            assert target.exists(), href
            if anchor:
                assert anchor in Page(target).ids, href


def test_suite_page_shows_tables_figures_and_what_is_missing(report):
    _, out = report
    page = Page(out / "suite-fixture.html")
    text = page.plain
    assert "Suite incomplete: 19 of 21 job(s) done" in text and "2 not started" in text
    assert "meanflow-ring8-mlp-s2" in text                       # the missing job is named
    assert "What one step buys" in text and "not reached" in text
    assert "95% interval over seeds" in text
    assert "Data-versus-data floors" in text and "energy distance 8.00e-04" in text
    assert len(page.imgs) >= 9            # per data set: NFE, Pareto, training (+ modes and samples on ring8)
    alts = " ".join(i["alt"] for i in page.imgs)
    for what in ("quality against NFE", "Pareto front", "Training curves", "Bar chart of modes on ring8 out of 8",
                 "Scatter plots of generated 2-D samples", "Grids of 64 generated images"):
        assert what in alts, what
    assert "drift_sq" in alts                                  # drifting's diagnostic is plotted
    assert "novelty_score (direction unknown)" in alts and "novelty_score (?)" in text   # no direction claimed
    assert "runs.html#run-drifting-ring8-mlp-s0" in page.hrefs


def test_one_step_table_reports_the_nfe_where_a_baseline_catches_up(report):
    _, out = report
    text = Page(out / "suite-fixture.html").plain
    digits = text[text.index("What one step buys: FD-domain"):]
    assert re.search(r"flow 1-16 [\d.]+ 16 16 ", digits), digits[:400]


def test_index_names_the_corrupted_record_and_unstarted_suites(report):
    results, out = report
    text = Page(out / "index.html").plain
    assert str(results / "records" / "broken-run.json") in text and "could not be read" in text
    assert "python -m bench.suite toy" in text and "python -m bench.suite quick" in text
    assert "19 / 21" in text


def test_runs_page_holds_provenance(report):
    _, out = report
    page = Page(out / "runs.html")
    assert "run-drifting-ring8-mlp-s0-adhoc" in page.ids and "run-flow-digits-mlp-s1" in page.ids
    text = page.plain
    assert "0123456789abcdef0123456789abcdef01234567" in text and "Resolved configuration" in text
    assert "Metric sources" in text and "ring8 reference, n=500" in text


def test_published_page_says_nothing_matches_yet(report):
    _, out = report
    text = Page(out / "published.html").plain
    assert "Table 5" in text and "1.54" in text and "No run of ours matches a published setting yet" in text


def test_an_empty_results_folder_says_so(tmp_path):
    from bench.report import build_report
    (tmp_path / "results").mkdir()
    index = build_report(tmp_path / "results", tmp_path / "reports")
    text = Page(index).plain
    assert "No run records yet" in text and "python -m bench.suite quick" in text


def test_a_missing_results_folder_is_one_clear_line(tmp_path, capsys):
    from bench.report.__main__ import main
    assert main(["--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_index_shows_the_cost_to_reproduce_and_suites_plot_quality_against_training_compute(report):
    _, out = report
    index = Page(out / "index.html").plain
    assert "Cost to reproduce" in index and "ablation_b2" in index and "NVIDIA H200" in index
    assert "42.7" in index and "2,000" in index   # drifting: 30,000 steps x 4,096 images at 800 images/s = 42.67 h
    assert "40.4%" in index                       # MFU 400 / 989.4
    assert " 55 " in index and "not measured" in index   # fastest mode: 50K x (1/10,000 s + 1 ms decode); flow: none
    assert "broken.json: not a perf result" in index
    alts = " ".join(i["alt"] for i in Page(out / "suite-fixture.html").imgs)
    assert "against training wall-clock hours (CPU)" in alts


def test_tuning_trials_are_drawn_from_records_alone(tmp_path):
    """Measured results keep records, not samples (results/runs/): the trials figure must not need them."""
    import json
    import shutil

    from bench.report.__main__ import main

    results = make_results(tmp_path, missing_jobs=False, corrupt=False)
    shutil.rmtree(results / "runs")
    study = tmp_path / "results" / "tune" / "flow_ring8"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({
        "method": "flow", "data": "ring8", "objective": {"metric": "energy"}, "budget": {"trials": 2},
        "trials": [{"number": 0, "state": "COMPLETE", "value": -2.0, "counted": True},
                   {"number": 1, "state": "COMPLETE", "value": -1.5, "counted": True}],
        "best": {"value": -2.0}}))
    assert main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "suite-fixture.html").read_text()
    assert "Dot plot of the objective (log10 energy) on the validation split of every tuning trial on ring8" in page
    assert "tuning trial on digits" not in page
