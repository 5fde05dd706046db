"""Unit tests of benches/render.py on the collected directories under
benches/testdata/ (see its README.md): `python3 -m unittest discover -s
benches` (scripts/test runs them)."""

import json
import os
import shutil
import tempfile
import unittest

import render

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "testdata")
# The temporary directory of the run the testdata was collected in, as
# its `commands` name it: the report writes it as $TMP.
RECORDED_TMP = "/tmp/benches-run.Qx7Lm2"
RECORDED_FLEET_TMP = "/tmp/benches-fleet.Rk3Jw9"
RECORDED_MIGRATE_TMP = "/tmp/benches-migrate.8QW6NG"


def read(name):
    with open(os.path.join(TESTDATA, name), encoding="utf-8") as file:
        return file.read()


class Collection:
    """A copy of testdata/run (plus OVERLAYS' files) in a temporary
    directory, its commands naming that directory as the run's."""

    def __init__(self, *overlays):
        self.parent = tempfile.mkdtemp(prefix="test-render.")
        self.dir = os.path.join(self.parent, "run")
        shutil.copytree(os.path.join(TESTDATA, "run"), self.dir)
        for overlay in overlays:
            shutil.copytree(os.path.join(TESTDATA, overlay), self.dir, dirs_exist_ok=True)
        lines = []
        for overlay in ("run",) + overlays:
            with open(os.path.join(TESTDATA, overlay, "commands"), encoding="utf-8") as file:
                lines.append(file.read().replace(RECORDED_TMP, self.dir))
        with open(os.path.join(self.dir, "commands"), "w", encoding="utf-8") as file:
            file.write("".join(lines))

    def __enter__(self):
        return render.Collected(self.dir)

    def __exit__(self, *_):
        shutil.rmtree(self.parent)


class Figures(unittest.TestCase):
    def test_median_of_odd_and_even_runs(self):
        self.assertEqual(render.median([3.0, 1.0, 2.0]), 2.0)
        self.assertEqual(render.median([4.0, 1.0, 3.0, 2.0]), 2.5)
        self.assertIsNone(render.median([]))

    def test_seconds_as_ms_below_one_second(self):
        self.assertEqual(render.fmt_s(0.4816), "481.6 ms")
        self.assertEqual(render.fmt_s(0.99996), "1000.0 ms")
        self.assertEqual(render.fmt_s(1.0), "1.00 s")
        self.assertEqual(render.fmt_s(2.834), "2.83 s")
        self.assertEqual(render.fmt_s(None), "n/a")

    def test_ratio_and_verdict_on_the_printed_ratio(self):
        self.assertEqual(render.ratio(0.4816, 0.3931), "1.23")
        # 1.5004 prints as 1.50: met, as the row reads.
        self.assertEqual(render.ratio(1.5004, 1.0), "1.50")
        self.assertEqual(render.at_most(render.ratio(1.5004, 1.0), "1.5"), "met")
        self.assertEqual(render.at_most("1.51", "1.5"), "missed")
        self.assertEqual(render.ratio(None, 1.0), "n/a")
        self.assertEqual(render.ratio(1.0, 0.0), "n/a")
        self.assertEqual(render.at_most("n/a", "1.5"), "n/a")
        self.assertEqual(render.below(2.0, 2), "missed")
        self.assertEqual(render.below(1.99, 2), "met")


class RecordedHyperfine(unittest.TestCase):
    """testdata/run/test-driver.json, a real hyperfine --export-json (3 runs)."""

    def setUp(self):
        self.hyperfine = render.Hyperfine(os.path.join(TESTDATA, "run", "test-driver.json"))

    def test_median_from_the_run_times(self):
        times = self.hyperfine.times("test-status")
        self.assertEqual(len(times), 3)
        self.assertEqual(self.hyperfine.median("test-status"), sorted(times)[1])
        self.assertEqual(self.hyperfine.maximum("test-status"), max(times))

    def test_unknown_command_has_no_figure(self):
        self.assertIsNone(self.hyperfine.median("no-such-command"))
        self.assertEqual(render.fmt_s(self.hyperfine.median("no-such-command")), "n/a")

    def test_no_failed_runs(self):
        self.assertEqual(self.hyperfine.failed_runs(), [("test-status", 0), ("test-floor", 0)])


class Checks(unittest.TestCase):
    def test_check_columns(self):
        with Collection() as c:
            self.assertEqual(c.check_json("status-local"), "exit 0, 1005 rows")
            self.assertEqual(c.check_json("test-status"), "exit 0, 7 rows")
            # Backticks and bars gone, cut at 100 bytes.
            self.assertEqual(
                c.check_json("isos-ssh"),
                "exit 3, 1004 rows, stderr: `error: cannot read bench-0042  over ssh: "
                "Débian ünïcödé " + "x" * 39 + "`")
            self.assertEqual(c.check_json("hung-20"), "exit 1, no JSON rows, stderr: `l1`")
            self.assertEqual(c.check_menu("menu-5-ssh"), "exit 0, 6 tables, eject declined")
            self.assertEqual(c.check_menu("menu-1005-ssh"),
                             "exit 0, 5 tables, NO 'Nothing changed'")

    def test_agent_calls_in_argv_and_sessions(self):
        with Collection() as c:
            self.assertEqual(c.agent_calls("hung-1"), 12)
            self.assertEqual(c.agent_calls("hung-10"), 4)
            self.assertEqual(c.agent_calls("hung-20"), 4)
            self.assertEqual(c.agent_calls("hung-20-stamps"), 0)

    def test_a_missing_rescan_reads_n_a(self):
        # benches/run's awk printed a missing second table as "0.00 s".
        with Collection() as c:
            first, gap, _, rc = c.stamps("hung-20.stamps")
            self.assertAlmostEqual(first, 2.0912, places=5)
            self.assertIsNone(gap)
            self.assertEqual(rc, "0")
            self.assertIn("| 2.09 s | n/a | < 2 s |", render.hung_row(c, "20", 2))

    def test_peak_rss_is_the_largest_run(self):
        with Collection() as c:
            self.assertEqual(render.peak_rss_kib(c), 26096)


class Report(unittest.TestCase):
    maxDiff = None

    def test_report_as_benches_run_wrote_it(self):
        # testdata/run.expected.md is what benches/run's own jq/awk/bash
        # report code (e7ef036) wrote for testdata/run, except the line
        # that says what computes the medians and the missing rescan
        # (n/a, where the awk printed 0.00 s).
        with Collection() as c:
            self.assertEqual(render.render_run(c), read("run.expected.md"))

    def test_library_and_upload_rows_where_measured(self):
        with Collection("run-library") as c:
            report = render.render_run(c)
        self.assertEqual(report, read("run-library.expected.md"))
        self.assertIn("| `library --json`, local | 401.2 ms | 337.7 ms | 1.19× | ≤ 1.5× | met |"
                      " exit 0, 205 rows |", report)
        self.assertIn("| `upload`, over ssh | 1.52 s | 1.33 s | 1.14× | ≤ 1.25× | met | exit 0 |",
                      report)

    def test_status_disks_row_where_measured(self):
        # A run that measured `status --disks --json` (benches/run since
        # the guests' filesystems): its row below `status --json`'s; the
        # recorded run, which did not, renders as before (above).
        with Collection() as c:
            bench = {"results": [
                {"command": name, "median": median, "max": median, "times": [median],
                 "exit_codes": [0]}
                for name, median in (("status-disks-local", 0.55), ("status-disks-floor-local", 0.42))
            ]}
            with open(os.path.join(c.dir, "status-disks-local.json"), "w", encoding="utf-8") as file:
                json.dump(bench, file)
            for name, text in (("status-disks-local.out", "[{}, {}]\n"),
                               ("status-disks-local.rc", "0\n"),
                               ("status-disks-local.err", ""),
                               ("facts/status_disks_floor", "2018 commands, one 70 KiB argument\n")):
                with open(os.path.join(c.dir, name), "w", encoding="utf-8") as file:
                    file.write(text)
            report = render.render_run(c)
        self.assertIn("| `status --disks --json`, local (floor: the status floor and"
                      " `guestinfo --filesystem` of each running domain with an agent,"
                      " 2018 commands, one 70 KiB argument) | 550.0 ms | 420.0 ms | 1.31× |"
                      " ≤ 1.5× | met | exit 0, 2 rows |", report)

    def test_kept_sections_survive_a_rewrite_verbatim(self):
        fleet = read("fleet-section.md")
        parsers = "## Parsers (`cargo bench --bench parsers`)\n\nby hand\n"
        existing = ("# Benchmarks\n\nold figures\n\n" + fleet + "\n## Commands\n\nold\n\n"
                    + parsers)
        with Collection() as c:
            report = render.render_run(c, existing)
        self.assertTrue(report.startswith(read("run.expected.md")), "the run's part changed")
        self.assertEqual(report[len(read("run.expected.md")):], "\n" + fleet + "\n" + parsers)
        self.assertNotIn("old figures", report)

    def test_the_figures_the_docs_quote_survive_a_rewrite_verbatim(self):
        # Written by hand (README.md, docs/ and ARCHITECTURE.md link to it),
        # with subsections of its own, after the sections the scripts wrote.
        quoted = ("## Figures the docs quote\n\nby hand\n\n### Fleets, in words\n\n"
                  "- `upload`: 1 GiB in 14.9 s\n")
        existing = ("# Benchmarks\n\nold figures\n\n" + read("fleet-section.md")
                    + "\n" + quoted)
        with Collection() as c:
            report = render.render_run(c, existing)
        self.assertEqual(report[len(read("run.expected.md")):],
                         "\n" + read("fleet-section.md") + "\n" + quoted)

    def test_main_keeps_the_sections_of_the_file_it_replaces(self):
        with Collection() as c:
            out = os.path.join(c.dir, "BENCHMARKS.md")
            with open(out, "w", encoding="utf-8") as file:
                file.write("# Benchmarks\n\nold\n\n" + read("fleet-section.md"))
            self.assertEqual(render.main(["render.py", "run", c.dir, out]), 0)
            with open(out, encoding="utf-8") as file:
                written = file.read()
        self.assertEqual(written, read("run.expected.md") + "\n" + read("fleet-section.md"))


class Scrape(unittest.TestCase):
    def test_section_as_benches_scrape_wrote_it(self):
        # What benches/scrape's heredoc (e7ef036) wrote for testdata/scrape.
        c = render.Collected(os.path.join(TESTDATA, "scrape"))
        self.assertEqual(render.render_scrape(c), read("scrape.expected.md"))


class Fleet(unittest.TestCase):
    maxDiff = None

    def test_section_as_benches_fleet_wrote_it(self):
        # What benches/fleet's own jq/awk/bash report code (e7ef036) wrote
        # for testdata/fleet, and what came since (testdata/README.md): a
        # failed host, stderr lines, a process peak at the bound (34: met),
        # an RSS peak over 1 GiB, a hung host named twice (9 of 10 named in
        # exactly one).
        parent = tempfile.mkdtemp(prefix="test-render.")
        try:
            directory = os.path.join(parent, "fleet")
            shutil.copytree(os.path.join(TESTDATA, "fleet"), directory)
            for name in ("commands", "floor-status-100.sh", "floor-isos-100.sh"):
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as file:
                    text = file.read().replace(RECORDED_FLEET_TMP, directory)
                with open(path, "w", encoding="utf-8") as file:
                    file.write(text)
            section = render.render_fleet(render.Collected(directory))
        finally:
            shutil.rmtree(parent)
        self.assertEqual(section, read("fleet.expected.md"))
        self.assertIn("| 34 / 33 | met | 1074 MiB / 412 MiB | **missed** |", section)
        self.assertIn("12 stderr lines, 9 of 10 hung hosts named in exactly one", section)
        # Graham's bound for 10 hung hosts and a budget of 16: 1.5625 τ.
        self.assertIn("| 7.88 s | ≤ 5 s: **missed** | ≤ 7.81 s: **missed** |", section)
        self.assertIn("| 27.58 s | ≤ 30 s: met | ≤ 46.88 s: met |", section)


class Migrate(unittest.TestCase):
    maxDiff = None

    def test_section_as_benches_migrate_wrote_it(self):
        # What benches/migrate wrote on the lab (the run's own collected
        # files, check.out cut down to rows of a verdict each); the
        # medians are hyperfine's times, the ratios on the printed ones.
        parent = tempfile.mkdtemp(prefix="test-render.")
        try:
            directory = os.path.join(parent, "migrate")
            shutil.copytree(os.path.join(TESTDATA, "migrate"), directory)
            for name in ("commands", "floor-check.sh", "floor-copy.sh"):
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as file:
                    text = file.read().replace(RECORDED_MIGRATE_TMP, directory)
                with open(path, "w", encoding="utf-8") as file:
                    file.write(text)
            section = render.render_migrate(render.Collected(directory))
        finally:
            shutil.rmtree(parent)
        self.assertEqual(section, read("migrate.expected.md"))
        self.assertIn("| 1.19 s | 1.17 s | 1.02× | ≤ 1.5× | met | exit 0, 1010 rows |", section)
        self.assertIn("| 2.72 s | 2.52 s | 1.08× | ≤ 1.25× | met | exit 0 |", section)
        self.assertNotIn(directory, section)


if __name__ == "__main__":
    unittest.main()
