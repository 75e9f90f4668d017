#!/usr/bin/env python3
"""suite.py - the benchmark suite: every workload under every allocator.

Allocators: buddymalloc (the library built here), jemalloc (the baseline),
mimalloc, tcmalloc (minimal) - each preloaded with LD_PRELOAD, never linked -
and glibc's malloc (no preload). Workloads: the programs of
bench/workloads (`alloc-workloads --list`), the recorded traces of
bench/trace replayed, and real programs (redis-server under
redis-benchmark, python3, sqlite3, g++).

The runs are interleaved - every allocator once per workload and round, in
an order that rotates between rounds - because the machine is shared and
noisy; the median of the rounds is reported. For each run: wall time, user +
system CPU and peak RSS of the process (wait4's rusage; for programs that
start others, of the largest), each also as a ratio to jemalloc run side by
side. A progress line goes to stderr for every run.

Output in OUT (default: build/bench-results, or docs/bench with --record):
results.json (every run), RESULTS.md (a table per workload, the summary and
the machine), and with gnuplot the plots time-ratio.png, peak-rss.png and
steady-rss.png.

Usage: suite.py [--quick] [--rounds N] [--only W,W] [--allocators a,b]
                [--out DIR] [--record] [--build DIR] [--rewrite]

--rewrite runs nothing: it rebuilds RESULTS.md and the plots of OUT from the
results.json an earlier run left there (after a change to the report).
"""
import argparse
import json
import lzma
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print("suite: " + msg, file=sys.stderr, flush=True)


# ---- allocators ---------------------------------------------------------------

def ldconfig_path(soname):
    """The library with this soname in the dynamic loader's cache, or None."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in out.splitlines():
        if line.strip().startswith(soname + " "):
            return line.split("=>")[-1].strip()
    return None


class Allocator:
    def __init__(self, key, name, preload, package, options=None):
        self.key, self.name, self.preload, self.package = key, name, preload, package
        self.options = options          # BUDDYMALLOC_OPTIONS for this column
        self.version = ""

    def env(self, base=None):
        env = dict(base if base is not None else os.environ)
        env.pop("LD_PRELOAD", None)
        env.pop("BUDDYMALLOC_OPTIONS", None)
        if self.preload:
            env["LD_PRELOAD"] = self.preload
        if self.options:
            env["BUDDYMALLOC_OPTIONS"] = self.options
        return env


def allocators(build, wanted):
    """The columns: the allocators found, in the order of the table. Two
    are variants of buddymalloc, run only when asked for by name (bench/
    harden.sh): bm-secure (harden=secure) and bm-plain (the library of
    build-plain, built with -Dfreelist_hardening=false)."""
    found = []
    lib = os.path.join(build, "src", "libbuddymalloc.so")
    plain = os.path.join(os.path.dirname(os.path.abspath(build)), "build-plain", "src",
                         "libbuddymalloc.so")
    table = [
        ("buddymalloc", "buddymalloc", lib, None),
        ("bm-secure", "buddymalloc harden=secure", lib, None, "harden=secure"),
        ("bm-plain", "buddymalloc without hardening", plain, None),
        ("jemalloc", "jemalloc", ldconfig_path("libjemalloc.so.2"), "libjemalloc2"),
        ("mimalloc", "mimalloc", ldconfig_path("libmimalloc.so.2"), "libmimalloc2.0"),
        ("tcmalloc", "tcmalloc", ldconfig_path("libtcmalloc_minimal.so.4"), "libtcmalloc-minimal4"),
        ("glibc", "glibc", None, "libc6"),
    ]
    for key, name, path, pkg, *opts in table:
        if (wanted and key not in wanted) or (not wanted and key.startswith("bm-")):
            continue
        if key != "glibc" and (not path or not os.path.exists(path)):
            log("%s: library not found (package %s): column skipped" % (name, pkg))
            continue
        a = Allocator(key, name, path, pkg, opts[0] if opts else None)
        if not preload_works(a):
            log("%s: LD_PRELOAD=%s does not load: column skipped" % (name, path))
            continue
        if pkg:
            q = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                               capture_output=True, text=True)
            a.version = q.stdout.strip()
        else:
            a.version = "this tree (%s)%s" % (git_describe(), ", " + name[12:] if key != "buddymalloc" else "")
        found.append(a)
    if not any(a.key == "jemalloc" for a in found):
        log("jemalloc is missing: ratios cannot be computed (scripts/deps.sh installs it)")
    return found


def preload_works(a):
    """The preload maps into a process and the process still runs."""
    if not a.preload:
        return True
    p = subprocess.run(["cat", "/proc/self/maps"], env=a.env(), capture_output=True, text=True)
    return p.returncode == 0 and os.path.basename(os.path.realpath(a.preload)) in p.stdout


def git_describe():
    p = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return p.stdout.strip() or "?"


# ---- running one process --------------------------------------------------------

class RunError(Exception):
    pass


RUSAGE_RUN = None        # build/bench/rusage-run, set in main()


def run_measured(argv, env, timeout, cwd=None, stdin=None):
    """Run argv under rusage-run; returns (wall s, user+sys s, peak RSS KiB,
    stdout). Peak RSS is the program's own (and the largest of the
    processes it waited for), not inherited from this Python process."""
    with tempfile.TemporaryDirectory() as d:
        ru_file = os.path.join(d, "rusage")
        try:
            p = subprocess.run([RUSAGE_RUN, ru_file] + argv, env=env, cwd=cwd,
                               stdin=stdin if stdin is not None else subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RunError("timed out after %d s: %s" % (timeout, " ".join(argv)))
        stderr = p.stderr.decode(errors="replace")
        if p.returncode != 0:
            raise RunError("exit %d: %s\n%s" % (p.returncode, " ".join(argv), stderr[-2000:]))
        kv = dict(x.split("=", 1) for x in open(ru_file).read().split())
    return (float(kv["wall"]), float(kv["cpu"]), int(kv["maxrss_kib"]),
            p.stdout.decode(errors="replace"))


def parse_result(stdout):
    """The RESULT line of alloc-workloads as a dict; SAMPLE lines as a list."""
    res, samples = None, []
    for line in stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        kv = dict(x.split("=", 1) for x in parts[1:] if "=" in x)
        if parts[0] == "RESULT":
            res = kv
        elif parts[0] == "SAMPLE":
            samples.append(kv)
    return res, samples


# ---- workloads --------------------------------------------------------------------

class Workload:
    """name, group, and run(alloc) -> dict of measurements (wall, cpu, rss, ...)."""
    def __init__(self, name, group, runner, describe):
        self.name, self.group, self.runner, self.describe = name, group, runner, describe


def micro_workloads(exe, quick, tmpdir):
    out = subprocess.run([exe, "--list"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("suite: %s --list failed" % exe)
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    result = []
    for n in names:
        if n == "trace":
            continue                    # one workload per recorded trace, below
        if n == "scaling":
            continue                    # heap sizes up to GiBs: bench/scaling.py
        argv = [exe, n] + (["--quick"] if quick else [])
        result.append(Workload(n, "micro", program_runner(argv), "alloc-workloads " + n))
        if n == "larson":
            # the same total work over 32 lanes: 16 times as many threads
            # alive at once on 2 cores, nearly every free remote
            argv = [exe, n, "--threads", "32"] + (["--quick"] if quick else [])
            result.append(Workload("larson-32", "micro", program_runner(argv),
                                   "alloc-workloads larson --threads 32"))
    for trace in sorted(os.listdir(os.path.join(ROOT, "bench", "trace"))):
        if not trace.endswith(".trace.xz"):
            continue
        plain = os.path.join(tmpdir, trace[:-3])
        with lzma.open(os.path.join(ROOT, "bench", "trace", trace)) as f, open(plain, "wb") as g:
            shutil.copyfileobj(f, g)
        name = "trace-" + trace[:-len(".trace.xz")]
        argv = [exe, "trace", "--trace", plain] + (["--quick"] if quick else [])
        result.append(Workload(name, "trace", program_runner(argv),
                               "replay of bench/trace/" + trace))
    return result


# Keys of a RESULT line kept beside the standard ones, and shown under the
# workload's table (median per allocator).
EXTRA_KEYS = {
    "kib_per_thread": "memory kept per idle thread, KiB ((idle - before) / threads)",
    "rss_joined_kib": "RSS after the threads exited, KiB",
    "rss_held_kib": "RSS at the end of the hold at the peak, KiB",
    "rss_low_kib": "RSS at the end of the low phase (a tenth of the peak live), KiB",
    "final_rss_kib": "RSS once everything is freed (200 ms later), KiB",
}


def program_runner(argv, timeout=600):
    def run(alloc):
        wall, cpu, rss, stdout = run_measured(argv, alloc.env(), timeout)
        res, samples = parse_result(stdout)
        if res is None:
            raise RunError("no RESULT line: " + " ".join(argv))
        m = {"wall": wall, "cpu": cpu, "rss": rss}
        if "seconds" in res:
            m["seconds"] = float(res["seconds"])
        for k in EXTRA_KEYS:
            if k in res:
                m[k] = float(res[k])
        if samples:
            m["samples"] = [(float(s["t"]), int(s["rss_kib"])) for s in samples
                            if "t" in s and "rss_kib" in s]
        return m
    return run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_runner(quick):
    """redis-server under the allocator, redis-benchmark (under glibc) against
    it: requests per second and the server's peak RSS."""
    n = 50000 if quick else 400000

    def run(alloc):
        port = free_port()
        tmp = tempfile.mkdtemp()
        ru_file = os.path.join(tmp, "rusage")
        server = subprocess.Popen([RUSAGE_RUN, ru_file, "redis-server", "--port", str(port),
                                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                  env=alloc.env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                  text=True).stdout.strip() == "PONG":
                    break
                time.sleep(0.05)
            else:
                raise RunError("redis-server did not start")
            t0 = time.monotonic()
            bench = subprocess.run(["redis-benchmark", "-p", str(port), "-q", "--csv",
                                    "-n", str(n), "-r", "100000", "-d", "200", "-P", "16",
                                    "-c", "20", "-t", "set,get,lpush,lpop,sadd,hset,incr"],
                                   env=Allocator("", "", None, None).env(),
                                   capture_output=True, text=True, timeout=600)
            wall = time.monotonic() - t0
            if bench.returncode != 0:
                raise RunError("redis-benchmark failed: " + bench.stderr[-500:])
            rps = []
            for line in bench.stdout.splitlines()[1:]:
                cols = [c.strip('"') for c in line.split(",")]
                if len(cols) >= 2:
                    rps.append(float(cols[1]))
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                           capture_output=True)
            if server.wait(timeout=60) != 0:
                raise RunError("redis-server exited with %d" % server.returncode)
            kv = dict(x.split("=", 1) for x in open(ru_file).read().split())
        except BaseException:
            server.kill()
            server.wait()
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not rps:
            raise RunError("redis-benchmark printed no results")
        return {"wall": wall, "cpu": float(kv["cpu"]), "rss": int(kv["maxrss_kib"]),
                "rps": math.exp(sum(math.log(r) for r in rps) / len(rps))}
    return run


def real_workloads(quick, tmpdir):
    result = []
    have = lambda p: shutil.which(p) is not None
    if have("redis-server") and have("redis-benchmark"):
        result.append(Workload("redis", "program", redis_runner(quick),
                               "redis-server serving redis-benchmark (-P 16, 7 commands)"))
    py = os.path.join(ROOT, "bench", "programs", "py_workload.py")
    if have("python3") and os.path.exists(py):
        n = "150000" if quick else "500000"
        argv = ["env", "PYTHONMALLOC=malloc", "python3", py, n]
        result.append(Workload("python3", "program", plain_runner(argv),
                               "python3 (PYTHONMALLOC=malloc): dicts, strings, json"))
    sql = os.path.join(ROOT, "bench", "programs", "sqlite.sql")
    if have("sqlite3") and os.path.exists(sql):
        rows = 100000 if quick else 600000
        db = os.path.join(tmpdir, "bench.db")
        result.append(Workload("sqlite3", "program", sqlite_runner(sql, rows, db),
                               "sqlite3: %d inserts, index, queries" % rows))
    cc = os.path.join(ROOT, "bench", "programs", "compile.cc")
    if have("g++") and os.path.exists(cc):
        argv = ["g++", "-std=c++17", "-O2" if not quick else "-O0", "-c", cc,
                "-o", os.path.join(tmpdir, "compile.o")]
        result.append(Workload("g++", "program", plain_runner(argv),
                               "g++ compiling an STL-heavy file (every process preloaded)"))
    return result


def plain_runner(argv, timeout=900):
    def run(alloc):
        wall, cpu, rss, _ = run_measured(argv, alloc.env(), timeout)
        return {"wall": wall, "cpu": cpu, "rss": rss}
    return run


def sqlite_runner(sql, rows, db):
    def run(alloc):
        if os.path.exists(db):
            os.unlink(db)
        text = open(sql).read().replace("@ROWS@", str(rows))
        with tempfile.TemporaryFile() as f:
            f.write(text.encode())
            f.seek(0)
            wall, cpu, rss, _ = run_measured(["sqlite3", db], alloc.env(), 900, stdin=f)
        return {"wall": wall, "cpu": cpu, "rss": rss}
    return run


# ---- the run ------------------------------------------------------------------------

def measure(workloads, allocs, rounds):
    runs = {}                       # (workload, allocator) -> [measurement]
    failed = {}
    total = len(workloads) * len(allocs) * rounds
    done = 0
    for r in range(rounds):
        for w in workloads:
            shift = r % len(allocs)
            for a in allocs[shift:] + allocs[:shift]:
                done += 1
                if (w.name, a.key) in failed:
                    continue
                try:
                    m = w.runner(a)
                except (RunError, subprocess.TimeoutExpired, OSError) as e:
                    failed[(w.name, a.key)] = "round %d: %s" % (r + 1, e)
                    log("[%d/%d] %s %s: FAILED %s" % (done, total, w.name, a.name, e))
                    continue
                runs.setdefault((w.name, a.key), []).append(m)
                extra = " %.0f req/s" % m["rps"] if "rps" in m else ""
                log("[%d/%d] round %d %-22s %-11s %7.3f s wall %7.3f s cpu %9.1f MiB%s"
                    % (done, total, r + 1, w.name, a.name, m["wall"], m["cpu"],
                       m["rss"] / 1024, extra))
    return runs, failed


def med(runs, w, a, key):
    xs = [m[key] for m in runs.get((w, a), []) if key in m]
    return statistics.median(xs) if xs else None


def time_of(runs, w, a):
    """The time that counts: 1/throughput for redis, the workload's own
    measured phase when it reports one, else wall time."""
    rps = med(runs, w, a, "rps")
    if rps:
        return 1.0 / rps
    s = med(runs, w, a, "seconds")
    return s if s is not None else med(runs, w, a, "wall")


def spread(runs, w, a):
    """(slowest - fastest) / median of the rounds' times, or None."""
    xs = []
    for m in runs.get((w, a), []):
        x = 1.0 / m["rps"] if m.get("rps") else m.get("seconds", m.get("wall"))
        if x:
            xs.append(x)
    if len(xs) < 2:
        return None
    return (max(xs) - min(xs)) / statistics.median(xs)


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt(x, digits=3):
    return "—" if x is None else ("%.*f" % (digits, x))


def machine_facts(allocs, when=None):
    facts = []
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = [l.split(":", 1)[1].strip() for l in lscpu.splitlines()
                 if l.startswith("Model name")]
        facts.append(("CPU", model[0] if model else platform.processor()))
    except OSError:
        pass
    facts.append(("CPUs", str(os.cpu_count())))
    facts.append(("kernel", platform.release()))
    try:
        with open("/etc/debian_version") as f:
            facts.append(("Debian", f.read().strip()))
    except OSError:
        pass
    for a in allocs:
        facts.append((a.name, a.version))
    facts.append(("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))))
    return facts


def write_results(out, workloads, allocs, runs, failed, rounds, quick, facts):
    keys = [a.key for a in allocs]
    names = {a.key: a.name for a in allocs}
    base = "jemalloc"
    lines = ["# Benchmark results", ""]
    lines.append("Made by `python3 bench/suite.py%s` (%d rounds, interleaved, medians). "
                 "Ratios are to jemalloc measured in the same run; below 1 is better "
                 "for buddymalloc." % (" --quick" if quick else " --record", rounds))
    lines.append("")
    lines += ["| machine | |", "|---|---|"]
    lines += ["| %s | %s |" % tuple(f) for f in facts]
    lines.append("")
    # summary
    lines += ["## Summary: buddymalloc / jemalloc", "",
              "time: the workload's own measured phase (1 / requests per second for "
              "redis); spread: (slowest - fastest) / median of the rounds, the larger "
              "of buddymalloc's and jemalloc's, to read the ratio against.", "",
              "| workload | time | user+sys | peak RSS | spread |", "|---|--:|--:|--:|--:|"]
    t_ratios, r_ratios = [], []
    slower, over, bigger = [], [], []
    for w in workloads:
        bt, jt = time_of(runs, w.name, "buddymalloc"), time_of(runs, w.name, base)
        bc, jc = med(runs, w.name, "buddymalloc", "cpu"), med(runs, w.name, base, "cpu")
        br, jr = med(runs, w.name, "buddymalloc", "rss"), med(runs, w.name, base, "rss")
        tr = bt / jt if bt and jt else None
        cr = bc / jc if bc and jc else None
        rr = br / jr if br and jr else None
        if tr:
            t_ratios.append(tr)
        if rr:
            r_ratios.append(rr)
        flag = " **over 1.25**" if tr and tr > 1.25 else ""
        sp = max([x for x in (spread(runs, w.name, "buddymalloc"), spread(runs, w.name, base))
                  if x is not None], default=None)
        lines.append("| %s | %s%s | %s | %s | %s |" % (
            w.name, fmt(tr, 2), flag, fmt(cr, 2), fmt(rr, 2),
            "%.0f %%" % (100 * sp) if sp is not None else "—"))
        if tr and tr > 1.25:
            over.append("%s %.2f" % (w.name, tr))
        elif tr and tr > 1.0:
            slower.append("%s %.2f" % (w.name, tr))
        if rr and rr > 1.1:
            bigger.append("%s %.2f" % (w.name, rr))
    gt, gr = geomean(t_ratios), geomean(r_ratios)
    lines.append("| **geometric mean** | **%s** | | **%s** | |" % (fmt(gt, 2), fmt(gr, 2)))
    lines.append("")
    lines.append("Targets: time ratio ≤ 1.0 on the geometric mean and ≤ 1.25 on every "
                 "workload; peak RSS ratio ≤ 1.1 on the geometric mean.")
    lines.append("")
    met = lambda ok: "met" if ok else "**missed**"
    lines.append("- time, geometric mean %s ≤ 1.0: %s" % (fmt(gt, 2), met(gt is not None and gt <= 1.0)))
    lines.append("- time ≤ 1.25 on every workload: %s%s" % (
        met(not over), " (over: %s)" % ", ".join(over) if over else ""))
    lines.append("- peak RSS, geometric mean %s ≤ 1.1: %s" % (fmt(gr, 2), met(gr is not None and gr <= 1.1)))
    lines.append("")
    lines.append("Where buddymalloc falls short of jemalloc in this run:")
    lines.append("")
    lines.append("- slower (time ratio over 1.0): %s" % (", ".join(over + slower) or "none"))
    lines.append("- more memory (peak RSS ratio over 1.1): %s" % (", ".join(bigger) or "none"))
    lines.append("")
    lines.append("Why, found by profiling (callgrind, the allocator's counters), and what "
                 "would fix it: docs/bench.md, section *Where buddymalloc loses, and why*. "
                 "Ratios within the spread column are noise.")
    lines.append("")
    # per workload
    lines += ["## Every workload", ""]
    for w in workloads:
        lines += ["### %s" % w.name, "", w.describe, ""]
        what = "req/s" if any("rps" in m for (wn, _), ms in runs.items() if wn == w.name
                              for m in ms) else "time s"
        lines.append("| allocator | %s | wall s | user+sys s | peak RSS MiB | time / je | "
                     "cpu / je | RSS / je |" % what)
        lines.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        jt, jc, jr = time_of(runs, w.name, base), med(runs, w.name, base, "cpu"), \
            med(runs, w.name, base, "rss")
        for k in keys:
            if (w.name, k) in failed:
                lines.append("| %s | failed: %s |||||||" % (names[k],
                             failed[(w.name, k)].splitlines()[0][:120]))
                continue
            t, c, r = time_of(runs, w.name, k), med(runs, w.name, k, "cpu"), \
                med(runs, w.name, k, "rss")
            shown = med(runs, w.name, k, "rps") if what == "req/s" else t
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                names[k], fmt(shown, 0 if what == "req/s" else 3),
                fmt(med(runs, w.name, k, "wall")), fmt(c), fmt(r / 1024 if r else None, 1),
                fmt(t / jt if t and jt else None, 2), fmt(c / jc if c and jc else None, 2),
                fmt(r / jr if r and jr else None, 2)))
        lines.append("")
        for key, label in EXTRA_KEYS.items():
            vals = [(names[k], med(runs, w.name, k, key)) for k in keys]
            if not any(v is not None for _, v in vals):
                continue
            lines.append("%s: %s" % (label, ", ".join(
                "%s %s" % (n, fmt(v, 0)) for n, v in vals)))
            lines.append("")
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    return t_ratios, r_ratios


def plots(out, workloads, allocs, runs):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots (scripts/deps.sh installs gnuplot-nox)")
        return
    others = [a for a in allocs if a.key != "jemalloc"]
    with open(os.path.join(out, "ratios.dat"), "w") as f:
        f.write("workload " + " ".join(a.name for a in others) + "\n")
        for w in workloads:
            jt, jr = time_of(runs, w.name, "jemalloc"), med(runs, w.name, "jemalloc", "rss")
            row = []
            for a in others:
                t = time_of(runs, w.name, a.key)
                row.append("%.4f" % (t / jt) if t and jt else "NaN")
            f.write(w.name + " " + " ".join(row) + "\n")
    with open(os.path.join(out, "rss.dat"), "w") as f:
        f.write("workload " + " ".join(a.name for a in allocs) + "\n")
        for w in workloads:
            row = []
            for a in allocs:
                r = med(runs, w.name, a.key, "rss")
                row.append("%.1f" % (r / 1024) if r else "NaN")
            f.write(w.name + " " + " ".join(row) + "\n")
    n_other, n_all = len(others), len(allocs)
    script = """
set terminal pngcairo size 1200,600 font ",10"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -40 scale 0
set key autotitle columnhead top left
set grid ytics
set output '{out}/time-ratio.png'
set title 'time / jemalloc (median of rounds; below 1 is faster than jemalloc)'
set yrange [0:*]
plot for [i=2:{n1}] '{out}/ratios.dat' using i:xtic(1), 1 with lines lc rgb 'black' notitle
set output '{out}/peak-rss.png'
set title 'peak RSS, MiB (median of rounds; log scale)'
set logscale y
set yrange [*:*]
plot for [i=2:{n2}] '{out}/rss.dat' using i:xtic(1)
""".format(out=out, n1=n_other + 1, n2=n_all + 1)
    steady = [w for w in workloads if w.name == "steady"]
    if steady:
        series = []
        for a in allocs:
            samples = [m.get("samples") for m in runs.get(("steady", a.key), [])]
            samples = [s for s in samples if s]
            if not samples:
                continue
            path = os.path.join(out, "steady-%s.dat" % a.key)
            with open(path, "w") as f:
                for t, r in samples[len(samples) // 2]:
                    f.write("%.3f %.1f\n" % (t, r / 1024))
            series.append("'%s' using 1:2 with lines lw 2 title '%s'" % (path, a.name))
        if series:
            script += """
unset logscale y
unset style data
set style data lines
set xtics norotate
set xlabel 'seconds'
set ylabel 'RSS, MiB'
set output '{out}/steady-rss.png'
set title 'steady: RSS over time (grow, hold, shrink to 10 %, hold)'
plot {series}
""".format(out=out, series=", ".join(series))
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if p.returncode != 0:
        log("gnuplot failed: " + p.stderr[-500:])


def shown_path(path):
    """A library path as recorded: relative to the tree when it is the one
    built here, else only its file name (the system's layout is not ours
    to record)."""
    if not path:
        return path
    rel = os.path.relpath(os.path.realpath(path), ROOT)
    return rel if not rel.startswith("..") else os.path.basename(path)


def load_results(out, exe):
    """What an earlier run left in OUT/results.json, for --rewrite."""
    path = os.path.join(out, "results.json")
    with open(path) as f:
        d = json.load(f)
    allocs = []
    for key, preload, version in d["allocators"]:
        a = Allocator(key, key, preload, None)
        a.version = version
        allocs.append(a)
    runs = {tuple(k.split("|", 1)): v for k, v in d["runs"].items()}
    failed = {tuple(k.split("|", 1)): v for k, v in d["failed"].items()}
    names = d.get("workloads") or sorted({w for w, _ in list(runs) + list(failed)})
    with tempfile.TemporaryDirectory() as tmp:
        known = {w.name: w for w in micro_workloads(exe, d["quick"], tmp) +
                 real_workloads(d["quick"], tmp)}
    # in the order the suite runs them
    order = list(known)
    workloads = [known[n] for n in sorted(names, key=lambda n: order.index(n)
                                          if n in order else len(order)) if n in known]
    facts = d.get("facts") or machine_facts(allocs, os.path.getmtime(path))
    log("rewriting the report of %s (%d runs)" % (path, sum(len(v) for v in runs.values())))
    return workloads, allocs, runs, failed, d["rounds"], d["quick"], facts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 rounds: a smoke test")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, --quick 2)")
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--allocators", help="comma-separated: buddymalloc,jemalloc,mimalloc,"
                    "tcmalloc,glibc (and bm-secure, bm-plain: bench/harden.sh)")
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--record", action="store_true", help="write into docs/bench")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build dir")
    ap.add_argument("--rewrite", action="store_true",
                    help="run nothing: rebuild RESULTS.md and the plots from OUT/results.json")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    out = args.out or os.path.join(ROOT, "docs", "bench") if args.record else \
        (args.out or os.path.join(args.build, "bench-results"))
    os.makedirs(out, exist_ok=True)
    global RUSAGE_RUN
    RUSAGE_RUN = os.path.join(args.build, "bench", "rusage-run")
    exe = os.path.join(args.build, "bench", "workloads", "alloc-workloads")
    for prog in (exe, RUSAGE_RUN):
        if not os.path.exists(prog):
            raise SystemExit("suite: %s not built (scripts/build.sh)" % prog)
    if args.rewrite:
        workloads, allocs, runs, failed, rounds, quick, facts = load_results(out, exe)
    else:
        wanted = set(args.allocators.split(",")) if args.allocators else None
        allocs = allocators(args.build, wanted)
        if not allocs:
            raise SystemExit("suite: no allocator to run")
        quick = args.quick
        with tempfile.TemporaryDirectory() as tmp:
            workloads = micro_workloads(exe, quick, tmp) + real_workloads(quick, tmp)
            if args.only:
                only = set(args.only.split(","))
                workloads = [w for w in workloads if w.name in only]
            log("%d workloads x %d allocators x %d rounds: %s" % (
                len(workloads), len(allocs), rounds, ", ".join(w.name for w in workloads)))
            runs, failed = measure(workloads, allocs, rounds)
        facts = machine_facts(allocs)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"rounds": rounds, "quick": quick,
                       "allocators": [(a.key, shown_path(a.preload), a.version)
                                      for a in allocs],
                       "facts": facts,
                       "workloads": [w.name for w in workloads],
                       "runs": {"%s|%s" % k: v for k, v in runs.items()},
                       "failed": {"%s|%s" % k: v for k, v in failed.items()}}, f, indent=1)
    t, r = write_results(out, workloads, allocs, runs, failed, rounds, quick, facts)
    plots(out, workloads, allocs, runs)
    made = [f for f in ("RESULTS.md", "results.json", "time-ratio.png", "peak-rss.png",
                        "steady-rss.png") if os.path.exists(os.path.join(out, f))]
    log("results in %s: %s" % (out, ", ".join(made)))
    log("buddymalloc / jemalloc, geometric mean: time %s, peak RSS %s; %d runs failed" % (
        fmt(geomean(t), 2), fmt(geomean(r), 2), len(failed)))
    # The smoke test (--quick in CI) counts the outputs as well as the runs:
    # a table for every workload, a result from every allocator, the plots.
    missing = check_outputs(out, workloads, allocs, runs)
    for m in missing:
        log("missing output: " + m)
    print("%d passed, %d failed" % (sum(len(v) for v in runs.values()),
                                    len(failed) + len(missing)))
    return 1 if failed or missing else 0


def check_outputs(out, workloads, allocs, runs):
    missing = []
    with open(os.path.join(out, "RESULTS.md")) as f:
        text = f.read()
    for w in workloads:
        if "\n### %s\n" % w.name not in text:
            missing.append("RESULTS.md has no table for " + w.name)
        for a in allocs:
            if not runs.get((w.name, a.key)):
                missing.append("no run of %s under %s" % (w.name, a.key))
    if not any(a.key == "jemalloc" for a in allocs):
        missing.append("no jemalloc column (scripts/deps.sh installs libjemalloc2)")
    if shutil.which("gnuplot"):
        pngs = ["time-ratio.png", "peak-rss.png"]
        if any(w.name == "steady" for w in workloads):
            pngs.append("steady-rss.png")
        for png in pngs:
            path = os.path.join(out, png)
            if not os.path.exists(path) or os.path.getsize(path) < 1000:
                missing.append(png)
    return missing


if __name__ == "__main__":
    sys.exit(main())
