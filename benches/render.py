#!/usr/bin/env python3
"""benches/render.py: the figures and the report of the benchmarks.

The bash scripts only collect: hyperfine's --export-json, each probe's
output, exit status and ssh connections, and one file per fact (the
machine, the counts) in their temporary directory. Everything computed
from those (medians, maxima, ratios, met/missed, the checks) and the
markdown itself is made here, with unit tests (benches/test_render.py).

    render.py run DIR OUT    BENCHMARKS.md from benches/run's DIR; the
                             sections other scripts wrote into OUT (the
                             simulated fleet, the migration preflight,
                             serve over simulated hosts, the parsers) and
                             the figures the docs quote are kept
    render.py scrape DIR     benches/scrape's section, on stdout
    render.py fleet DIR      benches/fleet's section, on stdout

Python 3 and its standard library only (Debian 12's python3).
"""

import glob
import json
import os
import re
import sys

# The targets, each as the report states it.
RATIO_TARGET = "1.5"
ISOS_TARGET = "1.2"
UPLOAD_TARGET = "1.25"
SSH_TARGET = 4
RSS_TARGET_KIB = 30 * 1024
TERM_TARGET_MS = 1000
SCRAPE_TARGET_MS = 10
CHECK_TARGET = "1.5"  # migrate-check --all against its floor
COPY_TARGET = "1.25"  # migrate-check --fix copy against its floor

# Sections of BENCHMARKS.md that other scripts write (or a person, from
# their output, or by hand: the figures the other docs link to instead of
# quoting them): a rewrite keeps them as they are, in their order.
KEPT_SECTIONS = (
    "## Simulated ssh fleet",
    "## Migration preflight",
    "## Parsers",
    "## `serve` over a thousand simulated hosts",
    "## Figures the docs quote",
)

# A note after a command group's name in "Commands".
COMMAND_NOTES = {"rss": " (3 runs, the largest counts)"}

MENU_TABLE = re.compile(rb"^[0-9]+ domain\(s\)$", re.MULTILINE)


# ------------------------------------------------------------ figures


def median(times):
    """The median of hyperfine's run times (not its own `median` field,
    so that the figure is the runs' as exported); None without runs."""
    if not times:
        return None
    ordered = sorted(times)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / 2


def fmt_s(seconds, ms_decimals=1):
    """Seconds as `123.4 ms` below a second, else `2.35 s`; `n/a` without."""
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return "%.*f ms" % (ms_decimals, seconds * 1000)
    return "%.2f s" % seconds


def ratio(tool, floor):
    """tool / floor to two decimals, as text; `n/a` without both."""
    if tool is None or floor is None or floor <= 0:
        return "n/a"
    return "%.2f" % (tool / floor)


def at_most(value, limit, missed="missed"):
    """met where value ≤ limit (a ratio compared as printed); n/a without."""
    if value is None or value == "n/a":
        return "n/a"
    return "met" if float(value) <= float(limit) else missed


def below(value, limit):
    """met where value < limit; n/a without."""
    if value is None or value == "n/a":
        return "n/a"
    return "met" if float(value) < float(limit) else "missed"


# ------------------------------------------------------------- inputs


class Hyperfine:
    """One hyperfine --export-json: its results by command name."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as file:
            self.results = json.load(file)["results"]

    def _result(self, name):
        for result in self.results:
            if result["command"] == name:
                return result
        return None

    def times(self, name):
        result = self._result(name)
        return result["times"] if result else []

    def median(self, name):
        return median(self.times(name))

    def maximum(self, name):
        times = self.times(name)
        return max(times) if times else None

    def field(self, name, key):
        """hyperfine's own figure (`median`, `max`) for `name`."""
        result = self._result(name)
        return result[key] if result else None

    def failed_runs(self):
        """(name, runs that exited non-zero) of every command."""
        return [
            (r["command"], sum(1 for code in r["exit_codes"] if code != 0))
            for r in self.results
        ]


class Collected:
    """What a bench script left in its directory: facts (one file each
    under facts/), hyperfine's JSON (ID.json) and the probes' files
    (ID.rc, ID.out, ID.err, ID.ssh)."""

    def __init__(self, directory):
        self.dir = directory
        self._hyperfine = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def read_bytes(self, name):
        try:
            with open(self.path(name), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def text(self, name):
        """A file's text as `$(cat FILE)` gives it: trailing newlines
        dropped; None where it is missing."""
        data = self.read_bytes(name)
        if data is None:
            return None
        return data.decode("utf-8", "surrogateescape").rstrip("\n")

    def fact(self, key):
        value = self.text(os.path.join("facts", key))
        if value is None:
            raise KeyError("no fact %r in %s/facts" % (key, self.dir))
        return value

    def has(self, name):
        return os.path.exists(self.path(name))

    def hyperfine(self, bench_id):
        if bench_id not in self._hyperfine:
            self._hyperfine[bench_id] = Hyperfine(self.path(bench_id + ".json"))
        return self._hyperfine[bench_id]

    def median(self, bench_id, name):
        return self.hyperfine(bench_id).median(name)

    def maximum(self, bench_id, name):
        return self.hyperfine(bench_id).maximum(name)

    def probe_rc(self, probe_id):
        return self.text(probe_id + ".rc") or ""

    def probe_ssh(self, probe_id):
        return self.text(probe_id + ".ssh") or ""

    def stderr_summary(self, probe_id):
        """The first line of a probe's stderr, markdown-safe (no ` or |),
        its first 100 bytes, in backticks."""
        first = (self.read_bytes(probe_id + ".err") or b"").split(b"\n", 1)[0]
        first = first.replace(b"`", b"").replace(b"|", b"")[:100]
        return "`%s`" % first.decode("utf-8", "surrogateescape")

    def has_stderr(self, probe_id):
        return bool(self.read_bytes(probe_id + ".err"))

    def rows(self, probe_id):
        """The length of a probe's JSON output, as text; `no JSON`."""
        data = self.read_bytes(probe_id + ".out") or b""
        if not data.strip():
            return ""
        try:
            value = json.loads(data)
        except ValueError:
            return "no JSON"
        # As jq's `length`: null's is 0, a number's its absolute value.
        if value is None:
            return "0"
        if isinstance(value, (list, dict, str)):
            return str(len(value))
        return "no JSON" if isinstance(value, bool) else str(abs(value))

    def check_json(self, probe_id):
        """A JSON probe's check column: `exit 0, 1005 rows[, stderr: …]`."""
        note = "exit %s, %s rows" % (self.probe_rc(probe_id), self.rows(probe_id))
        if self.has_stderr(probe_id):
            note += ", stderr: " + self.stderr_summary(probe_id)
        return note

    def check_menu(self, probe_id):
        """A menu probe's: exit, tables shown, whether the eject was declined."""
        out = self.read_bytes(probe_id + ".out") or b""
        note = "exit %s, %d tables" % (self.probe_rc(probe_id), len(MENU_TABLE.findall(out)))
        if b"Nothing changed" in out:
            note += ", eject declined"
        else:
            note += ", NO 'Nothing changed'"
        if self.has_stderr(probe_id):
            note += ", stderr: " + self.stderr_summary(probe_id)
        return note

    def stamps(self, name):
        """A timed menu run (`start T`, `table T`…, `end T`, `rc N`, epoch
        seconds): (first table after the start, the time between the first
        two tables, the whole run, exit status); None for what did not come."""
        start = end = None
        rc = "?"
        tables = []
        for line in (self.text(name) or "").splitlines():
            word, _, value = line.partition(" ")
            if word == "start":
                start = float(value)
            elif word == "table":
                tables.append(float(value))
            elif word == "end":
                end = float(value)
            elif word == "rc":
                rc = value
        first = tables[0] - start if tables else None
        gap = tables[1] - tables[0] if len(tables) > 1 else None
        return first, gap, end - start, rc

    def agent_calls(self, name):
        """The guest agent calls a logging virsh saw: its argv log's lines
        and, for sessions, the `guestinfo` lines of their stdin."""
        argv = self.read_bytes(name + ".calls") or b""
        session = self.read_bytes(name + ".calls.session") or b""
        return sum(1 for line in argv.split(b"\n") if line) + sum(
            1 for line in session.split(b"\n") if b"guestinfo" in line
        )

    def commands(self):
        """[(bench id, [command, …])] in the order they ran, from the
        `ID<TAB>COMMAND` lines of `commands`; the run's directory as $TMP."""
        groups = []
        for line in (self.text("commands") or "").split("\n"):
            if not line:
                continue
            bench_id, _, command = line.partition("\t")
            command = command.replace(self.dir, "$TMP")
            if groups and groups[-1][0] == bench_id:
                groups[-1][1].append(command)
            else:
                groups.append((bench_id, [command]))
        return groups


# ------------------------------------------------------------- the run


def floors_and_commands(c, out, floors):
    """A section's end, after its opening ```sh: the floor scripts named
    (their #! line left out, the run's directory as $TMP), then each
    bench's commands in a block of its own."""
    for floor in floors:
        for line in (c.text(floor) or "").split("\n"):
            if not line.startswith("#!"):
                out.append(line.replace(c.dir, "$TMP"))
    out.append("```")
    for bench_id, commands in c.commands():
        out += ["", "`%s`:" % bench_id, "", "```sh"] + commands + ["```"]
    return "\n".join(out) + "\n"


def kept_sections(text):
    """The KEPT_SECTIONS of an existing report, each from its heading to
    the next `## ` heading, verbatim, in the order they stand."""
    kept = []
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        if lines[index].rstrip("\n").startswith(KEPT_SECTIONS):
            end = index + 1
            while end < len(lines) and not lines[end].startswith("## "):
                end += 1
            kept.append("".join(lines[index:end]).rstrip("\n") + "\n")
            index = end
        else:
            index += 1
    return kept


def row_vs_floor(c, label, bench_id, tool, floor, probe_id, target=RATIO_TARGET):
    t = c.median(bench_id, tool)
    f = c.median(bench_id, floor)
    r = ratio(t, f)
    return "| %s | %s | %s | %s× | ≤ %s× | %s | %s |" % (
        label, fmt_s(t), fmt_s(f), r, target, at_most(r, target), c.check_json(probe_id))


def status_disks_rows(c):
    """`status --disks --json` against its floor, where the run measured
    it (runs before the guests' filesystems did not)."""
    if not c.has("status-disks-local.json"):
        return []
    return [row_vs_floor(c, "`status --disks --json`, local (floor: the status floor and "
                         "`guestinfo --filesystem` of each running domain with an agent, %s)"
                         % c.fact("status_disks_floor"), "status-disks-local",
                         "status-disks-local", "status-disks-floor-local", "status-disks-local")]


def menu_row(c, domains, where):
    probe_id = "menu-%s-%s" % (domains, where)
    t = c.median("menu-%s" % domains, probe_id)
    if where == "ssh":
        ssh = c.probe_ssh(probe_id)
        target, verdict = "≤ %d" % SSH_TARGET, at_most(ssh, SSH_TARGET)
    else:
        ssh = target = verdict = "—"
    return "| %s | %s | %s | %s | %s | %s | %s |" % (
        domains, where, fmt_s(t), ssh, target, verdict, c.check_menu(probe_id))


def hung_row(c, hung, timeout_s):
    first, gap, _, _ = c.stamps("hung-%s.stamps" % hung)
    slowest = c.maximum("hung-" + hung, "hung-%s-status" % hung)
    calls_status = c.agent_calls("hung-" + hung)
    calls_scans = c.agent_calls("hung-%s-stamps" % hung)
    v1 = at_most(slowest, timeout_s + 1) if calls_status > 0 else "not exercised"
    v2 = below(gap, timeout_s) if calls_scans > 0 else "not exercised"
    return "| %s | %s | %s | ≤ %s s | %s | %s | %s | %s | < %s s | %s | %s, %s | %s |" % (
        hung,
        fmt_s(c.median("hung-" + hung, "hung-%s-status" % hung)),
        fmt_s(slowest), timeout_s + 1, v1,
        fmt_s(c.median("hung-" + hung, "hung-%s-two-scans" % hung)),
        fmt_s(first), fmt_s(gap), timeout_s, v2,
        calls_status, calls_scans, c.check_json("hung-" + hung))


def peak_rss_kib(c):
    """The largest of the `/usr/bin/time -f %M` files rss.N (KiB)."""
    peak = 0
    for path in sorted(glob.glob(c.path("rss.*"))):
        if path.endswith(".err"):
            continue
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
        if lines and lines[-1].strip().isdigit():
            peak = max(peak, int(lines[-1]))
    return peak


def failed_runs(c):
    """The "Failed runs" lines: hyperfine runs that exited non-zero, and
    probes that did or wrote to stderr."""
    lines = []
    for path in sorted(glob.glob(c.path("*.json"))):
        for name, bad in Hyperfine(path).failed_runs():
            if bad > 0:
                lines.append("- `%s`: %d of the hyperfine runs exited non-zero" % (name, bad))
    for path in sorted(glob.glob(c.path("*.rc"))):
        probe_id = os.path.basename(path)[: -len(".rc")]
        if c.probe_rc(probe_id) == "0" and not c.has_stderr(probe_id):
            continue
        lines.append("- one run of `%s`: exit %s; stderr:" % (probe_id, c.probe_rc(probe_id)))
        lines.append("")
        lines.append("  ```text")
        err = (c.read_bytes(probe_id + ".err") or b"").decode("utf-8", "surrogateescape")
        err_lines = err.split("\n")
        if err.endswith("\n") or not err:
            err_lines.pop()
        lines += ["  " + line for line in err_lines[:5]]
        lines.append("  ```")
    return lines or ["None: every run exited 0 with nothing on stderr."]


def library_section(c, fleet_count):
    """`library --json` and `upload` against their floors, where the run
    measured them."""
    if not c.has("library-local.json"):
        return []
    volumes = c.fact("bench_volumes")
    out = [
        "### ISO library and upload",
        "",
        "`library --json` with %s more volumes in a directory pool of their own (`%s`:"
        % (volumes, c.fact("bench_pool")),
        "`bench-NNN.iso`, 1 MiB each, made with `vol-create-as` in one virsh batch, removed",
        "afterwards) and the %s domains. Floor: as for `isos` above (the domains' states, persistence and"
        % fleet_count,
        "XML, live and `--inactive`, which the holders come from), plus what the tool reads",
        "of the pools: `pool-list --name`, `vol-list --pool` of each active pool and",
        "`vol-dumpxml --vol` of each volume (%s). `upload` of a %s-byte ISO"
        % (c.fact("library_floor"), c.fact("upload_bytes")),
        "over ssh against ONE virsh doing `vol-create-as` + `vol-upload` of the same file;",
        "each run starts without the volume (hyperfine `--prepare` deletes it, untimed).",
        "",
        "| %s domains | tool | floor | ratio | target | | check (one run) |" % fleet_count,
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
        row_vs_floor(c, "`library --json`, local", "library-local", "library-local",
                     "library-floor-local", "library-local"),
        row_vs_floor(c, "`library --json`, over ssh", "library-ssh", "library-ssh",
                     "library-floor-ssh", "library-ssh"),
        upload_row(c),
        "",
    ]
    return out


def upload_row(c):
    t = c.median("upload-ssh", "upload-ssh")
    f = c.median("upload-ssh", "upload-floor-ssh")
    r = ratio(t, f)
    check = "exit %s" % c.probe_rc("upload-ssh")
    if c.has_stderr("upload-ssh"):
        check += ", stderr: " + c.stderr_summary("upload-ssh")
    return "| `upload`, over ssh | %s | %s | %s× | ≤ %s× | %s | %s |" % (
        fmt_s(t), fmt_s(f), r, UPLOAD_TARGET, at_most(r, UPLOAD_TARGET), check)


def render_run(c, existing=""):
    """BENCHMARKS.md from benches/run's directory; `existing` is the
    report it replaces, whose KEPT_SECTIONS are carried over."""
    fact = c.fact
    lab_count, fleet_count = fact("lab_count"), fact("fleet_count")
    fleet_size = fact("fleet_size")
    timeout_s = int(fact("hung_timeout_s"))
    mem_gib = "%.1f GiB" % (int(fact("mem_kib")) / 1048576)
    tree_note = ("working tree of src/ differs from HEAD" if fact("tree_dirty") == "1"
                 else "src/ as in HEAD")
    hyperfine_version = (fact("hyperfine_version").split() + ["", ""])[1]
    menu_input = (c.read_bytes("menu.in") or b"").decode("utf-8").replace("\n", " ")
    out = [
        "# Benchmarks",
        "",
        "Written by `benches/run` on %s; the whole run took %s s" % (fact("date"), fact("elapsed")),
        "(hyperfine `--warmup %s --runs %s`; set `WARMUP=`/`RUNS=` to change). Every time below"
        % (fact("warmup"), fact("runs")),
        "is the median of the runs, computed by `benches/render.py` from hyperfine's `--export-json`;",
        "a ratio is the tool's median over the floor's median. \"met\"/\"missed\" is",
        "computed from the figures in the same row.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        "| cores (`nproc`) | %s |" % fact("nproc"),
        "| memory | %s |" % mem_gib,
        "| CPU | %s |" % (fact("cpu") or "?"),
        "| kernel | %s |" % fact("kernel"),
        "| virsh | %s |" % fact("virsh"),
        "| libvirtd | %s |" % (fact("libvirtd") or "?"),
        "| hypervisor | %s (TCG guests) |" % (fact("hypervisor") or "?"),
        "| hyperfine | %s |" % hyperfine_version,
        "| tool | `%s`, %s; git HEAD %s, %s |" % (fact("bin"), fact("bin_version") or "?",
                                               fact("head"), tree_note),
        "",
        "## 1. QEMU fleet on the lab's libvirtd",
        "",
        "`qemu:///system` with the lab's %s guests (4 running, 1 shut off) and" % lab_count,
        "%s more defined by `benches/qemu-fleet define` in one virsh batch: shut off," % fleet_size,
        "128 MiB, 1 vCPU, an IDE CD-ROM `hdc`, every 100th holding one of the",
        "`lab-isos` pool's ISOs, names `bench-0001`… plus `bench-odd it's \"quoted\"` and",
        "`bench-odd-ünïcödé-Débian`, a marker in `<metadata>`; removed afterwards in one",
        "batch. %s domains in all during the measurements. \"over ssh\" is" % fleet_count,
        "`qemu+ssh://` through the lab's sshd on 127.0.0.1 (plain ssh, no connection master).",
        "",
        "Each floor is ONE virsh process (its commands one `;`-separated argument) doing",
        "exactly the work the tool's output needs, no more; the domain names come from",
        "libvirtd beforehand, outside the timing.",
        "",
        "- `isos`: every domain's name and state (`domstats --raw --state`), which are",
        "  persistent (`list --transient --name`), `dumpxml` of each active domain and",
        "  `dumpxml --inactive` of each persistent one (%s). Not `list --all`:" % fact("isos_floor"),
        "  it shows the same names and states but asks libvirtd for each domain's state",
        "  and id one call at a time (about 100 ms more here). The tool also reads `uri`",
        "  (where the connection went; a few ms).",
        "- `status`: the figures (`domstats` with the tool's groups `--state --cpu-total",
        "  --balloon --vcpu`), the UUID and persistence columns (`list --all --uuid --name`,",
        "  `list --transient --name`), `dumpxml` of every domain (the OS column from",
        "  libosinfo metadata: a shut-off domain's only source, a running one's fallback)",
        "  and `guestinfo --os` of every running domain (%s). Not in" % fact("status_floor"),
        "  it: the tool's `uri`, and the os-release read through the agent of `lab-blocked`",
        "  (which refuses guest-get-osinfo): three agent calls, the second needing the",
        "  file handle the first returns.",
        "",
        "| %s domains | tool | floor | ratio | target | | check (one run) |" % fleet_count,
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
        row_vs_floor(c, "`status --json`, local", "status-local", "status-local",
                     "status-floor-local", "status-local"),
        row_vs_floor(c, "`status --json`, over ssh", "status-ssh", "status-ssh",
                     "status-floor-ssh", "status-ssh"),
    ] + status_disks_rows(c) + [
        row_vs_floor(c, "`isos --json`, local", "isos-local", "isos-local",
                     "isos-floor-local", "isos-local", ISOS_TARGET),
        row_vs_floor(c, "`isos --json`, over ssh", "isos-ssh", "isos-ssh",
                     "isos-floor-ssh", "isos-ssh", ISOS_TARGET),
        "",
        "ssh connections of one run: `status --json` %s, `isos --json` %s."
        % (c.probe_ssh("status-ssh"), c.probe_ssh("isos-ssh")),
        "",
    ]
    out += library_section(c, fleet_count)
    s5, s1k = c.probe_ssh("menu-%s-ssh" % lab_count), c.probe_ssh("menu-%s-ssh" % fleet_count)
    media_before, media_after = c.read_bytes("media-before"), c.read_bytes("media-after")
    if media_before == media_after:
        media_note = ("unchanged (live and config, `domblklist` of the 5 lab guests"
                      " before and after)")
    else:
        media_note = "**CHANGED**: before and after differ (`domblklist` of the 5 lab guests)"
    out += [
        "### Menu session",
        "",
        "`--cache-ttl 1s`, stdin `%s`: the first table," % menu_input,
        "5 Rescans, an eject flow (`3`, drive `1`) declined at its confirmation (`n`),",
        "Exit; all lines fed at once. ssh connections: the new `Accepted publickey`",
        "lines in the lab's sshd log during one run outside hyperfine.",
        "",
        "| domains | where | wall time | ssh connections | target | | check (one run) |",
        "| ---: | --- | ---: | ---: | --- | --- | --- |",
        menu_row(c, lab_count, "local"),
        menu_row(c, lab_count, "ssh"),
        menu_row(c, fleet_count, "local"),
        menu_row(c, fleet_count, "ssh"),
        "",
        "Same number of ssh connections for %s and %s domains (%s and %s): %s."
        % (lab_count, fleet_count, s5, s1k, "met" if s5 == s1k else "missed"),
        "Lab guests' media after all menu runs: %s." % media_note,
        "",
        "## 2. %s test-driver domains" % fleet_size,
        "",
        "A node XML made like `fixtures/fleet-400.xml` (states cycling running,",
        "running, paused, shut off), %s domains. Floor: as for `status` above," % fleet_size,
        "ONE virsh process on the same `test://` URI, but the test driver's stats hold the",
        "state alone, so the figures come from each domain's `dominfo`, and it refuses",
        "guest agents, so one `guestinfo --os` (%s)." % fact("test_floor"),
        "",
        "| | tool | floor | ratio | target | | check (one run) |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
        row_vs_floor(c, "`status --json`", "test-driver", "test-status", "test-floor",
                     "test-status"),
        "",
        "Why this ratio moves from run to run (1.34× to 2.42× on this machine): the",
        "test driver lives inside virsh, which parses the node file at each connection",
        "(290 to 400 ms of CPU for these 1000 domains, measured one at a time). The",
        "floor has the names beforehand and does everything in one connection. The",
        "tool must list the domains before it can ask for each one's `dominfo` and",
        "`dumpxml`, so it pays either a second parse (a process of its own) or the",
        "two long lines on its one session, which virsh's readline takes a byte at",
        "a time (about 0.3 s here, markers or none). It takes the session.",
        "",
        "## 3. Hung guest agents",
        "",
        "`--virsh tests/support/hung-agent-virsh --sessions 4 --timeout %ss` on the test driver: the"
        % timeout_s,
        "agents of `hang-*` never answer. 10 hung: `fixtures/fleet-hung.xml` (12",
        "domains); 1 hung: `hang-01` + `ok-01`…`ok-11`; 20 hung: `hang-01`…`hang-20` +",
        "`ok-01`, `ok-02` (generated). The table must come within timeout + 1 s",
        "(verdict on the slowest run). Two scans: the menu with stdin `4 5` (first",
        "scan, one Rescan, Exit); the rescan must wait for none of the hung agents,",
        "i.e. its table comes less than the timeout after the first one (timed in one",
        "run from the tables' `N domain(s)` lines).",
        "",
        "Agent calls: the `guestinfo` calls that reached the fake virsh in one",
        "`status --json` run and in one two-scan run (through a copy that logs them,",
        "in argv or on a virsh session's stdin). With none, no hung agent was asked:",
        "the times then say nothing about hung agents, and the verdict reads \"not exercised\".",
        "",
        "| hung | `status` median | slowest | target | | two scans, whole run | 1st table at"
        " | rescan took | target | | agent calls | check (one run) |",
        "| ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    out += [hung_row(c, hung, timeout_s) for hung in fact("hung_variants").split()]
    rss = peak_rss_kib(c)
    term_ms = (int(fact("term_end_ns")) - int(fact("term_start_ns"))) // 1000000
    out += [
        "",
        "## 4. Peak RSS",
        "",
        "`/usr/bin/time`'s maximum RSS is the largest of the tool's own and of every virsh",
        "it started and reaped (wait4's `ru_maxrss` covers the waited-for descendants):",
        "as a rule a virsh's, not the tool's. A virsh's grows with the square of the script",
        "it parses (it keeps a copy of the rest of the line for each word), so no virsh is",
        "handed more than 8 KiB (`MAX_SCRIPT_BYTES`, `src/virsh/batch.rs`); the test",
        "`a_scan_peaks_at_about_one_virsh_of_memory` holds a scan to one virsh and 4 MiB.",
        "",
        "| | peak RSS | target | |",
        "| --- | ---: | --- | --- |",
        "| `status --json`, %s QEMU domains, local (largest of 3 runs) | %d KiB (%.1f MiB)"
        " | ≤ %d MiB | %s |"
        % (fleet_count, rss, rss / 1024, RSS_TARGET_KIB // 1024, at_most(rss, RSS_TARGET_KIB)),
        "",
        "## 5. `serve`",
        "",
        "`serve` on `fixtures/fleet-400.xml` (test driver), and on the same plus a host whose",
        "virsh never answers (`tests/support/fault-virsh`, FAULT=hang for that URI only,"
        " `--timeout 600s`):",
        "`curl` of /metrics (%s bytes) once the fleet's metrics are in. With the hung"
        % fact("metrics_bytes"),
        "host, /healthz answered %s." % fact("hung_health"),
        "",
        "| | /metrics median | slowest |",
        "| --- | ---: | ---: |",
    ]
    for name in ("serve-metrics", "serve-metrics-hung-host"):
        out.append("| `%s` | %s | %s |" % (name, fmt_s(c.median("serve", name)),
                                         fmt_s(c.maximum("serve", name))))
    out += [
        "",
        "SIGTERM to exit (one run, `date` before `kill` and after `wait`): %d ms;"
        " target ≤ %d ms: %s." % (term_ms, TERM_TARGET_MS, at_most(term_ms, TERM_TARGET_MS)),
        "",
        c.text("scrape.md") or "",
        "",
        "## Failed runs",
        "",
    ]
    out += failed_runs(c)
    out += [
        "",
        "## Commands",
        "",
        "As hyperfine ran them (through `sh -c`), from the repository's top",
        "directory. `$TMP` is the run's temporary directory: `fleet-%s.xml`," % fleet_size,
        "`fleet-hung-1.xml`, `fleet-hung-20.xml` are the generated fleets,",
        "`menu.in` and `two-scan.in` the menus' stdin (above), `floor-*.sh` the",
        "floors (`exec virsh -c URI 'domstats --raw --state ; … ; dumpxml --domain D1 ; …'`).",
    ]
    for bench_id, commands in c.commands():
        out += ["", "`%s`%s:" % (bench_id, COMMAND_NOTES.get(bench_id, "")), "", "```sh"]
        out += commands
        out.append("```")
    report = "\n".join(out) + "\n"
    for section in kept_sections(existing):
        report += "\n" + section
    return report


# ------------------------------------------------------------ scrape


def render_scrape(c):
    """benches/scrape's section: /metrics against the same bytes from a
    file, plain and gzipped (hyperfine's own medians and maxima)."""
    fact = c.fact
    h = c.hyperfine("scrape")
    url = fact("url")

    def ms(seconds):
        return "%.1f ms" % (seconds * 1000)

    def row(name, what, size, floor):
        med, slowest, base = h.field(name, "median"), h.field(name, "max"), h.field(floor, "median")
        # The difference to six significant digits (as awk printed it
        # when the scripts computed it), then to one decimal.
        part = float("%.6g" % (med * 1000 - base * 1000))
        verdict = "met" if med * 1000 <= SCRAPE_TARGET_MS else "missed"
        return "| %s | %s | %s | %s | %s | %.1f ms | %s |" % (
            what, size, ms(med), ms(slowest), ms(base), part, verdict)

    out = [
        "## 6. `serve`: one scrape of %s domains with every group" % fact("domains"),
        "",
        "Written by `benches/scrape` on %s UTC (%s cores," % (fact("date"), fact("nproc")),
        "%s, virsh %s, `%s`, git HEAD %s)."
        % (fact("kernel"), fact("virsh"), fact("bin"), fact("head") or "n/a"),
        "%s running test-driver domains, each with QEMU's figures from a synthesized"
        % fact("domains"),
        "listing (balloon, 2 vCPUs, 2 disks, 1 interface) through",
    ] + series_lines(c) + [
        "/metrics once the first scan is in, plain and gzipped (`Accept-Encoding: gzip`,",
        "as Prometheus sends), each against `curl` of the same bytes from a file",
        "(hyperfine `--warmup 2 --runs %s`, medians). `promtool check metrics` said: %s."
        % (fact("runs"), fact("promtool_said")),
        "Target: the /metrics median ≤ %d ms; \"serve's part\" is the median less" % SCRAPE_TARGET_MS,
        "the file's.",
        "",
        "| request | bytes | median | slowest | same bytes from a file | serve's part | ≤ %d ms |"
        % SCRAPE_TARGET_MS,
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        row("metrics", "/metrics", fact("plain_bytes"), "static"),
        row("metrics-gzip", "/metrics, gzip", fact("gzip_bytes"), "static-gzip"),
        "",
        "```sh",
        "curl -sf -o /dev/null %s" % url,
        "curl -sf -o /dev/null file://…/metrics.txt",
        "curl -sf -o /dev/null -H 'Accept-Encoding: gzip' %s" % url,
        "curl -sf -o /dev/null file://…/metrics.txt.gz",
        "```",
    ]
    out += render_landing(c)
    return "\n".join(out) + "\n"


def series_lines(c):
    """How many series the page held; since the guests' filesystems are
    on it (a run that counted them), how many of them those are."""
    series = c.fact("series")
    fs_series = c.text(os.path.join("facts", "fs_series"))
    if fs_series is None:
        return ["`tests/support/hung-agent-virsh` (DOMSTATS_FILE): %s series. `curl` of" % series]
    return [
        "`tests/support/hung-agent-virsh` (DOMSTATS_FILE), and one filesystem per guest",
        "from its agent (`guestinfo --filesystem`, through the same fake): %s series," % series,
        "%s of them the guests' filesystems. `curl` of" % fs_series,
    ]


def render_landing(c):
    """What one host's scan landing costs serve at each fleet size: its
    own CPU over the landings counted, per landing, and as a multiple of
    the smallest fleet's (flat: the landing encodes its own host only)."""
    fact = c.fact
    try:
        sizes = fact("landing_sizes").split()
    except KeyError:
        return []
    tick_ms = 1000.0 / int(fact("clock_ticks"))
    per_landing = {}
    for hosts in sizes:
        ticks = int(fact("landing_%s_ticks" % hosts))
        landings = int(fact("landing_%s_landings" % hosts))
        per_landing[hosts] = (ticks * tick_ms, landings, ticks * tick_ms / landings)
    smallest = per_landing[sizes[0]][2]
    out = [
        "",
        "### What one host's scan landing costs, as the hosts grow",
        "",
        "`serve` on %s test-driver hosts of %s domains each (one session per host, a"
        % (", ".join(sizes[:-1]) + " and " + sizes[-1], fact("landing_domains")),
        "budget as large as the fleet: no host waits for a place), once every host",
        "has been scanned: serve's own CPU (utime + stime, /proc/PID/stat, its",
        "virsh children not counted) over the scans that landed next. A landing",
        "encodes its own host's series; the page is put together from the hosts'",
        "parts by one publisher thread (at most a tenth of one core).",
        "",
        "| hosts | scans landed | serve's CPU | per landing | × %s hosts' |" % sizes[0],
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for hosts in sizes:
        total_ms, landings, each_ms = per_landing[hosts]
        out.append("| %s | %d | %.0f ms | %.2f ms | %.2f |" % (
            hosts, landings, total_ms, each_ms, each_ms / smallest if smallest else 0.0))
    return out


# ------------------------------------------------------------- fleet

FLEET_RATIO_TARGET = "1.5"
FLEET_RSS_BOUND_KIB = 1024 * 1024


def render_fleet(c):
    """benches/fleet's section: the tool over simulated ssh hosts against
    one plain virsh per host, the sampler's peaks, the hung hosts."""
    fact = c.fact
    budget, timeout_s = int(fact("budget")), int(fact("timeout_s"))
    process_bound = 2 * budget + 2
    long_timeout = fact("long_timeout")
    sizes = fact("sizes").split()
    with_hung, hung = int(fact("with_hung")), int(fact("hung"))

    def s(seconds):
        return fmt_s(seconds, ms_decimals=0)

    def verdict(value, limit):
        return at_most(value, limit, missed="**missed**")

    def mib(kib):
        return "%.0f MiB" % (int(kib or 0) / 1024)

    def peak(name, what):
        return c.text("%s.%s" % (name, what)) or ""

    def lines(name, ext, pattern=None):
        data = c.read_bytes(name + ext) or b""
        return sum(1 for line in data.split(b"\n")
                   if line and (pattern is None or pattern in line))

    # What one host shows: the tool's output on the fixture, locally.
    per_status, per_isos = int(c.rows("one-host-status")), int(c.rows("one-host-isos"))
    per_eject = lines("one-host-eject", ".out", b" --eject ")

    def check(name, kind, hosts):
        rc = c.probe_rc(name)
        if kind == "eject":
            rows, want = str(lines(name, ".out", b" --eject ")), hosts * per_eject
        else:
            rows = c.rows(name)
            want = hosts * (per_status if kind == "status" else per_isos)
        errs = lines(name, ".err")
        if rc == "0" and rows == str(want) and errs == 0:
            return "exit 0, %s rows: every host" % rows
        return "**exit %s, %s of %s rows, %s stderr lines**" % (rc, rows, want, errs)

    def row(hosts, kind, command, floor, suffix=""):
        name = "%s-%s%s" % (kind, hosts, suffix)
        t = c.median("fleet-%s%s" % (hosts, suffix), name)
        f = c.median("fleet-%s" % hosts, floor)
        r = ratio(t, f)
        per_budget = (t or 0) / max(int(hosts) / budget, 1)
        return "| %s | `%s` | %s | %s | %s× | %s | %.2f s | %s / %s | %s | %s / %s | %s | %s |" % (
            hosts, command + (" --timeout " + long_timeout if suffix else ""), s(t), s(f), r,
            verdict(r, FLEET_RATIO_TARGET), per_budget,
            peak(name, "procs"), peak(floor, "procs"), verdict(peak(name, "procs"), process_bound),
            mib(peak(name, "rss")), mib(peak(floor, "rss")),
            verdict(peak(name, "rss"), FLEET_RSS_BOUND_KIB), check(name, kind, int(hosts)))

    hung_uris = [uri for uri in (c.text("facts/hung_uris") or "").split("\n") if uri]

    def hung_check(name):
        err = c.read_bytes(name + ".err") or b""
        named = 0
        for uri in hung_uris:
            label = uri.split("?", 1)[0].replace("root@", "", 1)
            prefix = ("dismount_iso_qemu: error: %s: " % label).encode()
            if sum(1 for line in err.split(b"\n") if line.startswith(prefix)) == 1:
                named += 1
        return ("exit %s, %s rows (%d wanted), %d stderr lines, %d of %d hung hosts named in"
                " exactly one" % (c.probe_rc(name), c.rows(name), (with_hung - hung) * per_status,
                                  lines(name, ".err"), named, hung))

    # Graham's bound on greedy list scheduling: the run with the hung hosts
    # takes at most (its whole work) / B + (1 - 1/B) × the longest host,
    # the run without them at least (their work) / B.
    hung_bound_factor = 1 + (hung - 1) / budget

    def hung_row(suffix, limit):
        t90 = c.median("hung" + suffix, "hung-90" + suffix)
        t100 = c.median("hung" + suffix, "hung-100" + suffix)
        extra = "%.2f" % ((t100 or 0) - (t90 or 0))
        bound = "%.2f" % (float(limit) * hung_bound_factor)
        return "| `status --json`%s | %s | %s | %s s | ≤ %s s: %s | ≤ %s s: %s | %s | %s | %s |" % (
            " --timeout " + long_timeout if suffix else "", s(t90), s(t100), extra, limit,
            verdict(extra, limit), bound, verdict(extra, bound), peak("hung-100" + suffix, "procs"),
            mib(peak("hung-100" + suffix, "rss")), hung_check("hung-100" + suffix))


    calls_ms = [int(line) for line in (c.text("floor-calls.ms") or "").split() if line]
    slowest = max(calls_ms) / 1000 if calls_ms else None
    over = sum(1 for ms in calls_ms if ms > timeout_s * 1000)
    sample_every = fact("sample_every")
    if sample_every.startswith("0"):
        sample_every = sample_every[1:]
    out = [
        "## Simulated ssh fleet (`benches/fleet`)",
        "",
        "Written by `benches/fleet` on %s in %s s (hyperfine" % (fact("date"), fact("elapsed")),
        "`--warmup %s --runs %s`): %s cores, %.1f GiB, %s, %s, virsh"
        % (fact("warmup"), fact("runs"), fact("nproc"), int(fact("mem_kib")) / 1048576,
           fact("cpu") or "?", fact("kernel")),
        "%s, tool `%s` at git HEAD %s. Load average at the end:"
        % (fact("virsh"), fact("bin"), fact("head")),
        "%s (the bench's own 16 handshakes at once, client and server on the same cores)."
        % " ".join(fact("loadavg").split(" ")[:3]),
        "",
        "Hosts: `test+ssh://root@fleet-NNN%s` through an sshd of the fleet's" % fact("fixture"),
        "own (`scripts/lab.d/fleet`, `MaxStartups 1000:30:2000`, `SetEnv SHLVL=1` so that",
        "bash runs no ~/.bashrc per login, aliases of 127.0.0.1 in its ssh_config,",
        "`?command=` its ssh wrapper) in front of the lab's libvirtd, which gives",
        "each connection a test driver of its own: %d domains, %d drives and %d"
        % (per_status, per_isos, per_eject),
        "planned ejects per host. The tool with its defaults (`--max-connections %d`," % budget,
        "`--timeout %ds`), hosts from `--hosts FILE`. Floors: one plain virsh per host," % timeout_s,
        "%d at once (`xargs -P %d`): `%s` for `status`; `list --all` and"
        % (budget, budget, fact("status_batch")),
        "`dumpxml` + `dumpxml --inactive` of each of the %d domains for `isos` and" % per_status,
        "`eject --all --dry-run` (the tool also checks every medium's path on the host,",
        "which the floor does not). Processes and RSS: the peaks, over every run, of the",
        "process tree (the command and all its descendants; RSS summed, shared pages in",
        "each process) sampled from /proc every %s s. Time per %d hosts:" % (sample_every, budget),
        "the median over hosts ÷ %d, flat when the cost grows linearly in hosts ÷ budget." % budget,
        "The check is the last run's.",
        "",
        "| hosts | command | tool | floor | ratio | ≤ %s× | per %d hosts | processes, tool / floor"
        " | ≤ %d | RSS, tool / floor | ≤ 1 GiB | check |" % (FLEET_RATIO_TARGET, budget, process_bound),
        "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for hosts in sizes:
        out.append(row(hosts, "status", "status --json", "status-floor-" + hosts))
        out.append(row(hosts, "isos", "isos --json", "isos-floor-" + hosts))
        out.append(row(hosts, "eject", "eject --all --dry-run", "isos-floor-" + hosts))
    if c.has("fleet-100-long.json"):
        out.append(row("100", "status", "status --json", "status-floor-100", "-long"))
        out.append(row("100", "isos", "isos --json", "isos-floor-100", "-long"))
        out.append(row("100", "eject", "eject --all --dry-run", "isos-floor-100", "-long"))
    out += [
        "",
        "Plain virsh on this machine now, %d at once (one run of the `status` floor over" % budget,
        "100 hosts, each call timed): the slowest call took %s; %d of 100" % (s(slowest), over),
        "calls took longer than the tool's default `--timeout` of %d s." % timeout_s,
        "",
        "### Hung hosts",
        "",
        "%d hosts, every %dth of them one that accepts ssh but never answers (its key's"
        % (with_hung, with_hung // hung),
        "forced command swallows virsh's requests), against the %d others alone;"
        % (with_hung - hung),
        "`status --json`. Target: at most one `--timeout` (τ) more.",
        "",
        "Why the target cannot be promised: a hung host is told from a slow one only",
        "when its `--timeout` passes, and until then it holds its place of the budget",
        "(its ssh and virsh are alive, and the budget counts them). The hosts take",
        "places in their order, so the last hung host starts only after the hung",
        "hosts before it have held up to %d × τ place-seconds that the others wait"
        % (hung - 1),
        "for, and then runs its own τ: up to τ × (%d − 1) / %d more than τ in all."
        % (hung, budget),
        "Greedy scheduling (a free place goes to the next host at once) bounds the",
        "run at its whole work ÷ %d + (1 − 1/%d) × τ (Graham's bound), which makes"
        % (budget, budget),
        "the extra at most τ × (1 + (%d − 1) / %d) = %.2f τ: the \"guaranteed\" column."
        % (hung, budget, hung_bound_factor),
        "Only more places than the budget (hung hosts not counted) would do better.",
        "",
        "| | 90 hosts | 90 + 10 hung | more | target | guaranteed | processes | RSS |"
        " check (last run, 90 + 10 hung) |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | --- |",
        hung_row("", timeout_s),
        hung_row("-long", long_timeout[:-1] if long_timeout.endswith("s") else long_timeout),
        "",
        "### Commands",
        "",
        "Each one ran as `benches/fleet sample $TMP/NAME COMMAND` (the sampler); the floors:",
        "",
        "```sh",
    ]
    return floors_and_commands(
        c, out, ("floor-status-%s.sh" % sizes[-1], "floor-isos-%s.sh" % sizes[-1])
    )


def render_migrate(c):
    """benches/migrate's section: `migrate-check --all` from the QEMU fleet
    to a second host, and a `--fix copy` over ssh, against their floors."""
    fact = c.fact

    def row(label, bench_id, tool, floor, target, check):
        t, f = c.median(bench_id, tool), c.median(bench_id, floor)
        r = ratio(t, f)
        return "| %s | %s | %s | %s× | ≤ %s× | %s | %s |" % (
            label, fmt_s(t), fmt_s(f), r, target, at_most(r, target), check)

    copy_check = "exit %s" % c.probe_rc("copy")
    if c.has_stderr("copy"):
        copy_check += ", stderr: " + c.stderr_summary("copy")
    out = [
        "## Migration preflight (`benches/migrate`)",
        "",
        "Written by `benches/migrate` on %s at %s in %s s (hyperfine, %s runs; %s cores,"
        % (fact("date"), fact("head"), fact("seconds"), fact("runs"), fact("nproc")),
        "load average at the end %s; binary `%s`)." % (fact("loadavg"), fact("bin")),
        "",
        "`migrate-check --all --to SECOND --json` from the lab's libvirtd with %s domains"
        % fact("fleet_count"),
        "(benches/qemu-fleet) to the lab's second host (another user's `qemu:///session`",
        "over the lab's sshd) with %s volumes in two pools. Floor: ONE virsh per host, side"
        % fact("volumes"),
        "by side: on the source the domains' states, persistence and XML (live and",
        "`--inactive`), on the destination `pool-list --all`, each pool's `vol-list` and",
        "`vol-info` of the %s distinct media the domains hold. `--fix copy` of a %s-byte"
        % (fact("needed_volumes"), fact("copy_bytes")),
        "ISO from a volume of the lab over ssh to the second host over ssh, against `virsh",
        "vol-download` on the source and `vol-create-as` + `vol-upload` on the destination",
        "through a FIFO; each run starts without the copy (hyperfine `--prepare`, untimed).",
        "",
        "| | tool | floor | ratio | target | | check (one run) |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
        row("`migrate-check --all`, to a host over ssh", "check", "check", "check-floor",
            CHECK_TARGET, c.check_json("check")),
        row("`--fix copy`, over ssh both ways", "copy", "copy", "copy-floor",
            COPY_TARGET, copy_check),
        "",
        "The floors:",
        "",
        "```sh",
    ]
    return floors_and_commands(c, out, ("floor-check.sh", "floor-copy.sh"))


# -------------------------------------------------------------- main


def main(argv):
    if len(argv) == 4 and argv[1] == "run":
        directory, target = argv[2], argv[3]
        try:
            with open(target, encoding="utf-8") as file:
                existing = file.read()
        except FileNotFoundError:
            existing = ""
        report = render_run(Collected(directory.rstrip("/")), existing)
        with open(target, "w", encoding="utf-8", errors="surrogateescape") as file:
            file.write(report)
        return 0
    sections = {"scrape": render_scrape, "fleet": render_fleet, "migrate": render_migrate}
    if len(argv) == 3 and argv[1] in sections:
        section = sections[argv[1]](Collected(argv[2].rstrip("/")))
        sys.stdout.buffer.write(section.encode("utf-8", "surrogateescape"))
        return 0
    sys.stderr.write("usage: render.py run DIR OUT | render.py scrape|fleet|migrate DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
