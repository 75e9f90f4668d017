#!/usr/bin/env python3
"""scaling.py - the scaling benchmark: one mixed workload at growing heap sizes.

Runs `alloc-workloads scaling --size S` (bench/workloads/scaling.c: phases
alloc, free 90 %, realloc, churn, refill, free all) at every size, with one
thread and with two (`--threads 2`: each thread on half the size, the last
phase freeing the other thread's blocks), under buddymalloc, jemalloc,
mimalloc, tcmalloc and glibc - the same allocators as bench/suite.py,
preloaded, never linked. Runs are interleaved (every allocator once per size,
variant and round, in an order that rotates between rounds) because the
machine is shared and noisy; medians of the rounds are reported.

A size is skipped when it will not fit: a run needs about MEM_FACTOR (2) x
the size (more if an allocator's peak RSS over live bytes was higher at a
smaller size), checked against MemAvailable of /proc/meminfo at the start
and again before every run. A run is killed after TIMEOUT_FACTOR (10) x
jemalloc's wall time at the same size and variant (or an estimate from the
smaller sizes before jemalloc has run there), and counted as a timeout; the
same allocator is not run again at that size in later rounds.

Output in OUT (default build/bench-results/scaling, docs/bench/scaling with
--record): results.json (every run), RESULTS.md (per phase, ns/op per
allocator and size, ratios to jemalloc and to the best peer, the goals) and,
with gnuplot, scaling-1t.png and scaling-2t.png (ns/op against heap size,
one panel per phase, and peak RSS / live bytes).

Usage: scaling.py [--sizes 64M,256M,1G,4G,16G] [--rounds N] [--threads 1,2]
                  [--allocators a,b] [--out DIR] [--record] [--build DIR]
                  [--rewrite]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402  (the allocators and the machine facts)

ROOT = suite.ROOT
BM, BASE = "buddymalloc", "jemalloc"
PHASES = {1: ["alloc", "free", "realloc", "churn", "refill", "freeall"],
          2: ["alloc", "free", "realloc", "churn", "refill", "remote"]}
PHASE_TEXT = {
    "alloc": "malloc random sizes (16 B .. 32 KiB, 1 in 64 32 KiB .. 1 MiB), each written, "
             "up to the target",
    "free": "free a random 90 % of the blocks, in random order",
    "realloc": "realloc a random half of the survivors, 4 times over, each time to 0.5 .. 2 x "
               "the block's size",
    "churn": "batches of 64 blocks of 4 .. 16 KiB and 1 MiB, written, then freed "
             "(2 x the target in all)",
    "refill": "malloc random sizes again until the live bytes are back at the target",
    "freeall": "free every block, in random order",
    "remote": "each thread frees every block the other thread allocated, in random order",
}
GOAL_GROWTH, GOAL_PEER = 1.5, 1.25
MIB = 1 << 20


def log(msg):
    print("scaling: " + msg, file=sys.stderr, flush=True)


def parse_size(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    if s[-1:] in "KMG":
        s = s[:-1]
    return int(float(s) * mult)


def label(size):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return "%d%s" % (size >> shift, unit)
    return str(size)


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- running ------------------------------------------------------------------------

class Timeout(Exception):
    pass


def run_one(exe, alloc, size, threads, seed, timeout):
    """One run; returns the RESULT line's keys (numbers) and the wall time.
    The program runs in a session of its own, so a timeout kills it whole."""
    argv = [exe, "scaling", "--size", str(size), "--seed", str(seed)]
    if threads > 1:
        argv += ["--threads", str(threads)]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=alloc.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise Timeout("timed out after %.1f s" % timeout)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise suite.RunError("exit %d: %s" % (p.returncode, err.decode(errors="replace")[-500:]))
    res, _ = suite.parse_result(out.decode(errors="replace"))
    if res is None:
        raise suite.RunError("no RESULT line")
    m = {"wall": wall}
    for k, v in res.items():
        try:
            m[k] = float(v)
        except ValueError:
            pass
    return m


def ref_wall(runs, sizes, size, threads):
    """jemalloc's median wall time at this size and variant, else its time at
    the largest smaller size scaled by the size ratio, else None."""
    je = [m["wall"] for m in runs.get((label(size), threads, BASE), [])]
    if je:
        return statistics.median(je)
    smaller = [s for s in sizes if s < size]
    for s in reversed(smaller):
        je = [m["wall"] for m in runs.get((label(s), threads, BASE), [])]
        if je:
            return statistics.median(je) * size / s
    return None


def measure(exe, allocs, sizes, variants, rounds, args):
    runs, failed, skipped = {}, {}, {}
    ratio_seen = {}                       # allocator -> highest peak RSS / live seen
    avail = mem_available()
    todo = []
    for s in sizes:
        need = s * args.mem_factor + 256 * MIB
        if need > avail:
            why = ("needs about %.1f GiB (%.1f x %s + 256 MiB) per run, MemAvailable is "
                   "%.1f GiB" % (need / (1 << 30), args.mem_factor, label(s), avail / (1 << 30)))
            skipped[label(s)] = why
            log("%s skipped: %s" % (label(s), why))
        else:
            todo.append(s)
    total = len(todo) * len(variants) * len(allocs) * rounds
    done = 0
    for r in range(rounds):
        shift = r % len(allocs)
        order = allocs[shift:] + allocs[:shift]
        for s in todo:
            for t in variants:
                for a in order:
                    done += 1
                    key = (label(s), t, a.key)
                    if key in failed:
                        continue
                    factor = max(args.mem_factor, ratio_seen.get(a.key, 0))
                    need = s * factor + 256 * MIB
                    waited = 0
                    while mem_available() < need and waited < 60:
                        time.sleep(5)
                        waited += 5
                    if mem_available() < need:
                        failed[key] = ("skipped in round %d: needs about %.1f GiB, MemAvailable "
                                       "%.1f GiB" % (r + 1, need / (1 << 30),
                                                     mem_available() / (1 << 30)))
                        log("[%d/%d] %s %dt %s: %s" % (done, total, label(s), t, a.key,
                                                        failed[key]))
                        continue
                    ref = ref_wall(runs, todo, s, t)
                    timeout = max(args.min_timeout, args.timeout_factor * ref) if ref else \
                        args.min_timeout + 60 * s / (1 << 30)
                    try:
                        m = run_one(exe, a, s, t, args.seed, timeout)
                    except (Timeout, suite.RunError, OSError) as e:
                        failed[key] = "round %d: %s" % (r + 1, e)
                        log("[%d/%d] %s %dt %s: FAILED %s" % (done, total, label(s), t,
                                                              a.key, e))
                        continue
                    runs.setdefault(key, []).append(m)
                    if m.get("peak_live_kib"):
                        ratio_seen[a.key] = max(ratio_seen.get(a.key, 0),
                                                m["peak_rss_kib"] / m["peak_live_kib"])
                    log("[%d/%d] round %d %5s %dt %-11s %7.2f s wall  peak RSS %7.0f MiB  %s" % (
                        done, total, r + 1, label(s), t, a.key, m["wall"],
                        m["peak_rss_kib"] / 1024,
                        " ".join("%s %.0f" % (ph, m.get(ph + "_ns", 0)) for ph in PHASES[t])))
    return runs, failed, skipped


# ---- the report ---------------------------------------------------------------------

def med(runs, key, field):
    xs = [m[field] for m in runs.get(key, []) if field in m]
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "—"
    if digits == 0 and x >= 100:
        return "{:,.0f}".format(x)
    return "%.*f" % (max(digits, 1) if x < 100 else digits, x)


def rss_ratio(runs, key):
    xs = [m["peak_rss_kib"] / m["peak_live_kib"] for m in runs.get(key, [])
          if m.get("peak_live_kib")]
    return statistics.median(xs) if xs else None


def cell(runs, failed, key, field):
    v = med(runs, key, field)
    if v is None and key in failed:
        return "timeout" if "timed out" in failed[key] else "failed"
    return fmt(v) + (" †" if key in failed and v is not None else "")


def goals(runs, sizes, keys, t):
    """Per phase: buddymalloc's ns/op at the largest size it finished over its
    own at the smallest, and its worst ratio to the best peer."""
    rows = []
    for ph in PHASES[t]:
        field = ph + "_ns"
        bm = [(s, med(runs, (s, t, BM), field)) for s in sizes]
        bm = [(s, v) for s, v in bm if v]
        growth = (bm[-1][1] / bm[0][1], bm[-1][0]) if len(bm) > 1 and bm[0][0] == sizes[0] \
            else None
        worst = None
        for s in sizes:
            b = med(runs, (s, t, BM), field)
            peers = [med(runs, (s, t, k), field) for k in keys if k != BM]
            peers = [p for p in peers if p]
            if b and peers:
                r = b / min(peers)
                if worst is None or r > worst[0]:
                    worst = (r, s)
        rows.append((ph, growth, worst))
    return rows


def write_report(out, allocs, sizes, variants, runs, failed, skipped, rounds, facts, cmd):
    keys = [a.key for a in allocs]
    done_sizes = [label(s) for s in sizes if label(s) not in skipped]
    lines = ["# Scaling benchmark", ""]
    lines.append("Made by `%s` (%d round%s, interleaved, medians). The workload: "
                 "`alloc-workloads scaling --size S [--threads 2]` (bench/workloads/README.md); "
                 "ns/op is the wall time of a phase over its allocator calls (malloc, realloc, "
                 "free), including the writes into the blocks and the page faults they take. "
                 "With two threads both run at once, so ns/op is wall time over the calls of both."
                 % (cmd, rounds, "" if rounds == 1 else "s"))
    lines.append("")
    lines += ["| machine | |", "|---|---|"] + ["| %s | %s |" % tuple(f) for f in facts]
    lines.append("")
    if skipped:
        lines.append("Sizes skipped:")
        lines.append("")
        for s, why in skipped.items():
            lines.append("- %s: %s" % (s, why))
        lines.append("")
    if failed:
        lines.append("Runs that did not finish (a timeout is %s x jemalloc's wall time at the "
                     "same size, at least %d s):" % (fmt(ARGS_FOR_REPORT["timeout_factor"], 0),
                                                     ARGS_FOR_REPORT["min_timeout"]))
        lines.append("")
        for (s, t, k), why in sorted(failed.items(), key=lambda kv: (parse_size(kv[0][0]),
                                                                     kv[0][1], kv[0][2])):
            lines.append("- %s, %d thread%s, %s: %s" % (s, t, "" if t == 1 else "s", k,
                                                          why.splitlines()[0][:200]))
        lines.append("")
    for t in variants:
        tl = "%d thread%s" % (t, "" if t == 1 else "s")
        lines += ["## Goals, %s" % tl, ""]
        lines.append("buddymalloc's ns/op at the largest size over its own at %s (goal ≤ %.1f) "
                     "and its highest ns/op over the best peer's at any size (goal ≤ %.2f):"
                     % (done_sizes[0] if done_sizes else "?", GOAL_GROWTH, GOAL_PEER))
        lines.append("")
        lines += ["| phase | largest / smallest | goal | worst / best peer | at | goal |",
                  "|---|--:|---|--:|---|---|"]
        for ph, growth, worst in goals(runs, done_sizes, keys, t):
            g = "%.2f (%s)" % (growth[0], growth[1]) if growth else "—"
            gm = "—" if not growth else ("met" if growth[0] <= GOAL_GROWTH else "**missed**")
            w = "%.2f" % worst[0] if worst else "—"
            wm = "—" if not worst else ("met" if worst[0] <= GOAL_PEER else "**missed**")
            lines.append("| %s | %s | %s | %s | %s | %s |" % (ph, g, gm, w,
                                                               worst[1] if worst else "—", wm))
        timeouts = sorted({s for (s, tt, k), why in failed.items() if tt == t and k == BM})
        if timeouts:
            lines.append("")
            lines.append("buddymalloc did not finish every round at %s (%s): every goal "
                         "there is **missed**; a figure marked † is the median of the "
                         "rounds that finished." % (", ".join(timeouts), tl))
        lines.append("")
        lines += ["## Peak RSS / peak live bytes, %s" % tl, ""]
        lines.append("| size | " + " | ".join(keys) + " |")
        lines.append("|---|" + "--:|" * len(keys))
        for s in done_sizes:
            lines.append("| %s | %s |" % (s, " | ".join(
                fmt(rss_ratio(runs, (s, t, k)), 2) if rss_ratio(runs, (s, t, k))
                else cell(runs, failed, (s, t, k), "none") for k in keys)))
        lines.append("")
        lines += ["## Phases, %s: ns per operation" % tl, ""]
        for ph in PHASES[t]:
            field = ph + "_ns"
            lines += ["### %s, %s" % (ph, tl), "", PHASE_TEXT[ph] + ".", ""]
            lines.append("| size | ops | " + " | ".join(keys) + " | " +
                         " | ".join("%s / je" % k for k in keys if k != BASE) +
                         " | bm / best peer |")
            lines.append("|---|--:|" + "--:|" * (2 * len(keys)))
            for s in done_sizes:
                ops = None
                for k in keys:
                    ops = ops or med(runs, (s, t, k), ph + "_ops")
                je = med(runs, (s, t, BASE), field)
                row = [s, fmt(ops)] + [cell(runs, failed, (s, t, k), field) for k in keys]
                for k in keys:
                    if k == BASE:
                        continue
                    v = med(runs, (s, t, k), field)
                    row.append("%.2f" % (v / je) if v and je else "—")
                b = med(runs, (s, t, BM), field)
                peers = [med(runs, (s, t, k), field) for k in keys if k != BM]
                peers = [p for p in peers if p]
                if b and peers:
                    r = b / min(peers)
                    row.append("%.2f%s" % (r, " **over %.2f**" % GOAL_PEER if r > GOAL_PEER else ""))
                else:
                    row.append("—")
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


ARGS_FOR_REPORT = {"timeout_factor": 10, "min_timeout": 30}


def plots(out, allocs, sizes, variants, runs, skipped):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no plots (scripts/deps.sh installs gnuplot-nox)")
        return []
    made = []
    done = [s for s in sizes if label(s) not in skipped]
    for t in variants:
        series = {ph: [] for ph in PHASES[t] + ["rss"]}
        for a in allocs:
            path = os.path.join(out, "scaling-%dt-%s.dat" % (t, a.key))
            with open(path, "w") as f:
                f.write("# size_mib " + " ".join(PHASES[t]) + " peak_rss_over_live\n")
                for s in done:
                    key = (label(s), t, a.key)
                    vals = [med(runs, key, ph + "_ns") for ph in PHASES[t]] + \
                        [rss_ratio(runs, key)]
                    f.write("%d %s\n" % (s // MIB, " ".join(
                        "%.2f" % v if v else "NaN" for v in vals)))
            for i, ph in enumerate(PHASES[t] + ["rss"]):
                series[ph].append("'%s' using 1:%d with linespoints lw 2 title '%s'"
                                  % (path, i + 2, a.key))
        png = "scaling-%dt.png" % t
        script = ["set terminal pngcairo size 1600,800 font ',9'",
                  "set output '%s'" % os.path.join(out, png),
                  "set multiplot layout 2,4 title 'ns per operation against heap size, "
                  "%d thread%s (median of rounds; log scales)'" % (t, "" if t == 1 else "s"),
                  "set logscale x 2", "set grid", "set key top left",
                  "set xrange [%g:%g]" % (done[0] / MIB / 1.5, done[-1] / MIB * 1.5)
                  if done else "",
                  "set xlabel 'live heap, MiB'", "set xtics (%s)" % ", ".join(
                      "'%s' %d" % (label(s), s // MIB) for s in done)]
        for i, ph in enumerate(PHASES[t]):
            script += ["unset key" if i else "", "set logscale y", "set ylabel 'ns / op'",
                       "set title '%s'" % ph, "plot " + ", ".join(series[ph])]
        script += ["unset logscale y", "set yrange [1:*]", "set ylabel 'peak RSS / live'",
                   "set title 'peak RSS / peak live bytes'", "plot " + ", ".join(series["rss"]),
                   "unset multiplot"]
        p = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True,
                           capture_output=True)
        if p.returncode != 0:
            log("gnuplot failed: " + p.stderr[-500:])
        elif os.path.exists(os.path.join(out, png)):
            made.append(png)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64M,256M,1G,4G,16G",
                    help="comma-separated heap sizes, suffix K, M or G (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3; medians)")
    ap.add_argument("--threads", default="1,2", help="variants: thread counts (default 1,2)")
    ap.add_argument("--allocators", help="comma-separated: buddymalloc,jemalloc,mimalloc,"
                    "tcmalloc,glibc")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mem-factor", type=float, default=2.0,
                    help="memory a run needs, as a multiple of the size (default 2)")
    ap.add_argument("--timeout-factor", type=float, default=10.0,
                    help="kill a run after this many times jemalloc's wall time (default 10)")
    ap.add_argument("--min-timeout", type=int, default=30, help="seconds (default 30)")
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--record", action="store_true", help="write into docs/bench/scaling")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build dir")
    ap.add_argument("--rewrite", action="store_true",
                    help="run nothing: rebuild RESULTS.md and the plots from OUT/results.json")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every run finished and the report and plots exist "
                         "(the smoke test; nothing about speed)")
    args = ap.parse_args()
    out = args.out or (os.path.join(ROOT, "docs", "bench", "scaling") if args.record
                       else os.path.join(args.build, "bench-results", "scaling"))
    os.makedirs(out, exist_ok=True)
    ARGS_FOR_REPORT.update(timeout_factor=args.timeout_factor, min_timeout=args.min_timeout)
    exe = os.path.join(args.build, "bench", "workloads", "alloc-workloads")
    if not os.path.exists(exe):
        raise SystemExit("scaling: %s not built (scripts/build.sh)" % exe)
    if args.rewrite:
        with open(os.path.join(out, "results.json")) as f:
            d = json.load(f)
        allocs = []
        for key, preload, version in d["allocators"]:
            a = suite.Allocator(key, key, preload, None)
            a.version = version
            allocs.append(a)
        sizes, variants, rounds, facts, cmd = (d["sizes"], d["threads"], d["rounds"],
                                               d["facts"], d["command"])
        unkey = lambda k: (k.split("|")[0], int(k.split("|")[1]), k.split("|")[2])
        runs = {unkey(k): v for k, v in d["runs"].items()}
        failed = {unkey(k): v for k, v in d["failed"].items()}
        skipped = d["skipped"]
        ARGS_FOR_REPORT.update(d.get("limits", {}))
    else:
        sizes = sorted(parse_size(s) for s in args.sizes.split(","))
        variants = [int(t) for t in args.threads.split(",")]
        rounds = args.rounds
        wanted = set(args.allocators.split(",")) if args.allocators else None
        allocs = suite.allocators(args.build, wanted)
        if not allocs:
            raise SystemExit("scaling: no allocator to run")
        cmd = "python3 bench/scaling.py " + " ".join(
            a for a in sys.argv[1:] if not a.startswith("--build") and not a.startswith("--out"))
        log("sizes %s x %d variants x %d allocators x %d rounds" % (
            ",".join(label(s) for s in sizes), len(variants), len(allocs), rounds))
        t0 = time.monotonic()
        runs, failed, skipped = measure(exe, allocs, sizes, variants, rounds, args)
        log("measured in %.0f s" % (time.monotonic() - t0))
        facts = suite.machine_facts(allocs)
        facts.append(("MemTotal", "%.1f GiB" % (os.sysconf("SC_PAGE_SIZE") *
                                                os.sysconf("SC_PHYS_PAGES") / (1 << 30))))
        facts.append(("duration", "%.0f s" % (time.monotonic() - t0)))
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"command": cmd.strip(), "rounds": rounds, "sizes": sizes,
                       "threads": variants, "seed": args.seed,
                       "limits": dict(ARGS_FOR_REPORT),
                       "allocators": [(a.key, suite.shown_path(a.preload), a.version)
                                      for a in allocs],
                       "facts": facts, "skipped": skipped,
                       "runs": {"%s|%d|%s" % k: v for k, v in runs.items()},
                       "failed": {"%s|%d|%s" % k: v for k, v in failed.items()}}, f, indent=1)
    sizes = [s if isinstance(s, int) else parse_size(s) for s in sizes]
    write_report(out, allocs, sizes, variants, runs, failed, skipped, rounds, facts, cmd.strip())
    made = plots(out, allocs, sizes, variants, runs, skipped)
    log("results in %s: RESULTS.md, results.json%s" % (out, "".join(", " + m for m in made)))
    n = sum(len(v) for v in runs.values())
    print("%d runs, %d did not finish, %d sizes skipped" % (n, len(failed), len(skipped)))
    if args.check:
        missing = [p for p in ["RESULTS.md"] + ["scaling-%dt.png" % t for t in variants
                                                if shutil.which("gnuplot")]
                   if not os.path.exists(os.path.join(out, p))]
        for m in missing:
            log("missing output: " + m)
        return 1 if failed or missing or n == 0 else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
