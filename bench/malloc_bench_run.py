#!/usr/bin/env python3
"""malloc_bench_run.py - malloc-bench under buddymalloc, jemalloc and glibc.

For each workload (sizes, prodcons, idle, idle-hold) malloc-bench is run once per
allocator and round, the allocators interleaved (bm, je, glibc, bm, je,
glibc, ...) because the machine is shared and noisy: 3 rounds with --quick,
5 otherwise. buddymalloc and jemalloc are preloaded with LD_PRELOAD, never
linked; glibc runs with no preload. The median of the rounds is reported per
cell, as one Markdown table per workload on stdout; a progress line for every
run goes to stderr.

Before anything is measured each allocator runs `malloc-bench --info`, which
names the library malloc resolves to: a preload that does not take effect, or
a library that cannot be loaded (for instance jemalloc's "cannot allocate
memory in static TLS block"), is said in the output and that column skipped.
A run that fails (a crash, a non-zero exit, no RESULT lines, a hang past the
timeout) stops that workload for that allocator; the output says what
happened and the command that reproduces it.

Usage: malloc_bench_run.py MALLOC_BENCH LIBBUDDYMALLOC_SO [--quick]
           [--rounds N] [--workloads sizes,prodcons,idle,idle-hold]
           [--jemalloc PATH]
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time

def _find_jemalloc():
    """libjemalloc.so.2 from the dynamic loader's cache (Debian: libjemalloc2)."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return "libjemalloc.so.2"
    for line in out.splitlines():
        if line.strip().startswith("libjemalloc.so.2 "):
            return line.split("=>")[-1].strip()
    return "libjemalloc.so.2"


JEMALLOC_DEFAULT = _find_jemalloc()
WORKLOADS = ["sizes", "prodcons", "idle", "idle-hold"]

# The fields of a RESULT line that name its cell (the others are measurements).
CELL_KEYS = {"sizes": ("size", "threads"), "prodcons": ("threads",), "idle": ("threads",),
             "idle-hold": ("threads",)}


def log(msg):
    print("malloc-bench: " + msg, file=sys.stderr, flush=True)


class Allocator:
    def __init__(self, name, short, preload, expect):
        self.name = name            # column title
        self.short = short          # in ratios: bm, je
        self.preload = preload      # path for LD_PRELOAD, or None
        self.expect = expect        # substring of the library malloc must come from
        self.usable = True
        self.library = None         # what --info reported

    def env(self):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if self.preload:
            env["LD_PRELOAD"] = self.preload
        return env

    def command_line(self, argv):
        """The shell command that does the same run, for the report."""
        pre = "LD_PRELOAD=%s " % shlex.quote(self.preload) if self.preload else "env -u LD_PRELOAD "
        return pre + " ".join(shlex.quote(a) for a in argv)


class CpuMeter:
    """CPU time the rest of the machine used while we ran: all busy time in
    /proc/stat minus what our children used. A measure of the noise."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.other = 0.0        # CPU seconds used by other processes
        self.steal = 0.0        # CPU seconds the hypervisor took
        self.wall = 0.0

    @staticmethod
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        busy = v[0] + v[1] + v[2] + v[5] + v[6]
        steal = v[7] if len(v) > 7 else 0
        t = os.times()
        return busy, steal, t.children_user + t.children_system, time.monotonic()

    def start(self):
        self.s0 = self.sample()

    def stop(self):
        b0, st0, c0, w0 = self.s0
        b1, st1, c1, w1 = self.sample()
        self.other += max(0.0, (b1 - b0) / self.tick - (c1 - c0))
        self.steal += (st1 - st0) / self.tick
        self.wall += w1 - w0

    def text(self, cpus):
        if self.wall <= 0:
            return "n/a"
        return ("other processes used %.0f%% of the %d CPUs, steal %.0f%%"
                % (100 * self.other / (self.wall * cpus), cpus,
                   100 * self.steal / (self.wall * cpus)))


def parse_fields(line):
    fields = {}
    for tok in line.split()[1:]:
        if "=" in tok:
            k, v = tok.split("=", 1)
            fields[k] = v
    return fields


def run_once(alloc, argv, timeout):
    """(ok, stdout, problem, seconds)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, env=alloc.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return False, out, "no exit after %d s (killed): a hang?" % timeout, time.monotonic() - t0
    secs = time.monotonic() - t0
    err = p.stderr.strip()
    if p.returncode != 0:
        if p.returncode < 0:
            what = "killed by signal %d" % -p.returncode
        else:
            what = "exit status %d" % p.returncode
        tail = "\n".join(err.splitlines()[-12:])
        return False, p.stdout, what + (("; stderr:\n" + tail) if tail else "; nothing on stderr"), secs
    if err:
        # Not fatal, but worth seeing: an allocator complaining on stderr.
        log("%s wrote on stderr: %s" % (alloc.name, " | ".join(err.splitlines()[-3:])))
    return True, p.stdout, None, secs


def probe(alloc, bench, notes):
    if alloc.preload and not os.path.exists(alloc.preload):
        notes.append("%s: %s does not exist; its column is skipped." % (alloc.name, alloc.preload))
        alloc.usable = False
        return
    argv = [bench, "--info"]
    ok, out, problem, _ = run_once(alloc, argv, 30)
    if not ok:
        why = problem
        if problem and "static TLS" in problem:
            why = "cannot be preloaded (cannot allocate memory in static TLS block): " + problem
        notes.append("%s: `%s` failed, its column is skipped: %s"
                     % (alloc.name, alloc.command_line(argv), why))
        alloc.usable = False
        return
    for line in out.splitlines():
        if line.startswith("INFO "):
            f = parse_fields(line)
            if "malloc_from" in f:
                alloc.library = f["malloc_from"]
    if not alloc.library or alloc.expect not in os.path.basename(alloc.library):
        notes.append("%s: malloc resolves to %s, not to a %s library: the preload did not take "
                     "effect, its column is skipped." % (alloc.name, alloc.library, alloc.expect))
        alloc.usable = False


def median_spread(values):
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med if med else 0.0
    return med, spread


def fmt_num(v, digits=1):
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return "%.*f" % (digits, v)


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2f" % (a / b)


def cell_of(workload, fields):
    return tuple(fields.get(k, "") for k in CELL_KEYS[workload])


def cell_sort_key(cell):
    return tuple(int(c) if c.isdigit() else c for c in cell)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench", help="path to malloc-bench")
    ap.add_argument("libbuddymalloc", help="path to libbuddymalloc.so")
    ap.add_argument("--quick", action="store_true", help="3 rounds of short cells")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default 3 quick, 5 full)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--jemalloc", default=JEMALLOC_DEFAULT, help="jemalloc shared library")
    ap.add_argument("--timeout", type=int, default=0,
                    help="seconds before a run counts as hung (default 120 quick, 300 full)")
    args = ap.parse_args()

    bench = os.path.abspath(args.bench)
    rounds = args.rounds or (3 if args.quick else 5)
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error("unknown workload %r" % w)
    timeout = args.timeout or (120 if args.quick else 300)
    started = time.monotonic()
    cpus = os.cpu_count() or 1

    allocs = [
        Allocator("buddymalloc", "bm", os.path.abspath(args.libbuddymalloc), "libbuddymalloc"),
        Allocator("jemalloc", "je", args.jemalloc, "libjemalloc"),
        Allocator("glibc", "glibc", None, "libc.so"),
    ]
    notes = []
    for a in allocs:
        probe(a, bench, notes)
    bm = allocs[0]
    if not bm.usable:
        for n in notes:
            print("- " + n)
        log("buddymalloc cannot be measured; stopping")
        return 1
    used = [a for a in allocs if a.usable]

    mode = ["--quick"] if args.quick else []
    # data[workload][alloc name][cell] = list of field dicts, one per round
    data = {w: {a.name: {} for a in used} for w in workloads}
    failed = {}         # (workload, alloc name) -> text
    info = {}           # alloc name -> INFO fields
    total = len(workloads) * rounds * len(used)
    done = 0            # runs done or given up, for the progress count
    runs = 0            # runs actually made
    meters = {w: CpuMeter() for w in workloads}
    for w in workloads:
        active = list(used)
        for r in range(rounds):
            for a in list(active):
                argv = [bench] + mode + [w]
                done += 1
                runs += 1
                meters[w].start()
                ok, out, problem, secs = run_once(a, argv, timeout)
                meters[w].stop()
                results = 0
                for line in out.splitlines():
                    if line.startswith("RESULT "):
                        f = parse_fields(line)
                        data[w][a.name].setdefault(cell_of(w, f), []).append(f)
                        results += 1
                    elif line.startswith("INFO "):
                        info.setdefault(a.name, {}).update(parse_fields(line))
                if ok and results == 0:
                    ok, problem = False, "no RESULT line on stdout"
                if not ok:
                    last = [l for l in out.splitlines() if l.startswith("RESULT ")]
                    where = ("after %d RESULT line%s, the last: `%s`"
                             % (len(last), "" if len(last) == 1 else "s", last[-1])
                             if last else "before any RESULT line")
                    problem = where + "; " + problem
                status = "%.2f s" % secs if ok else "FAILED (%s)" % problem.splitlines()[0]
                log("[%2d/%d] %-8s round %d/%d %-11s %s" % (done, total, w, r + 1, rounds,
                                                            a.name, status))
                if not ok:
                    failed[(w, a.name)] = "`%s` (round %d): %s" % (a.command_line(argv), r + 1,
                                                                  problem)
                    active.remove(a)
                    done += rounds - r - 1
                    # the cells of a failed allocator are not reported
                    data[w][a.name] = {}

    # ---- the report ---------------------------------------------------------
    print("# malloc-bench: buddymalloc vs jemalloc vs glibc")
    print()
    print("- mode: %s; %d round(s), the allocators interleaved in every round; median per cell"
          % ("--quick (about 0.05 s per cell)" if args.quick else "full (about 0.3 s per cell)",
             rounds))
    i0 = info.get(bm.name, {})
    print("- CPUs online: %s; glibc %s; kernel %s"
          % (i0.get("cpus", "?"), i0.get("glibc", "?"), os.uname().release))
    for a in allocs:
        if a.usable:
            how = "LD_PRELOAD=" + a.preload if a.preload else "no preload"
            print("- %s: %s, malloc from %s" % (a.name, how, a.library))
    for n in notes:
        print("- " + n)
    print("- ratios: buddymalloc time (or memory) / the other's, lower is better for "
          "buddymalloc; spread: (max - min) / median over the rounds, per allocator")
    print("- ns/op: wall time of one operation in one thread (sizes: one free + one malloc; "
          "prodcons: one block, malloc'd in one thread and freed in the other); "
          "Mops/s: all threads together")
    print()

    def value(w, a, cell, key):
        runs = data[w].get(a.name, {}).get(cell)
        if not runs:
            return None, None
        vals = [float(f[key]) for f in runs if key in f]
        if not vals:
            return None, None
        return median_spread(vals)

    def failure_cell(w, a):
        return "failed" if (w, a.name) in failed else "n/a"

    spread_title = "spread " + "/".join(a.short for a in used)
    je = next((a for a in used if a.short == "je"), None)
    gl = next((a for a in used if a.short == "glibc"), None)

    def allocator_cells(row, w, cell, key, digits):
        """Append each allocator's median of key, then the ratios of
        buddymalloc to jemalloc and glibc; return the spreads."""
        meds, spreads = {}, []
        for a in used:
            m, s = value(w, a, cell, key)
            meds[a.name] = m
            row.append(fmt_num(m, digits) if m is not None else failure_cell(w, a))
            spreads.append("%.0f%%" % (100 * s) if s is not None else "-")
        b = meds.get(bm.name)
        for other in (je, gl):
            if other:
                row.append(fmt_ratio(b, meds.get(other.name)))
        return spreads

    for w in workloads:
        cells = set()
        for a in used:
            cells.update(data[w][a.name].keys())
        cells = sorted(cells, key=cell_sort_key)
        if w == "sizes":
            print("## sizes: working set of 256 blocks per thread, free a random one + malloc "
                  "a new one (ns per step, per thread)")
            print()
        elif w == "prodcons":
            print("## prodcons: one thread mallocs 16-1024 B, a ring of 1024, another thread "
                  "on another CPU frees (ns per block)")
            print()
        elif w == "idle":
            print("## idle: 256 threads malloc about 3 MiB each of 64-256 B, free it all, "
                  "then wait (memory in KiB)")
            print()
        else:
            print("## idle-hold: as idle, but all 256 threads hold their 3 MiB at once "
                  "before freeing (memory in KiB)")
            print()

        if w in ("sizes", "prodcons"):
            head = ["size (B)", "threads"] if w == "sizes" else ["threads"]
            cols = [a.name + " ns/op" for a in used]
            ratios = (["bm/jemalloc"] if je else []) + (["bm/glibc"] if gl else [])
            print("| " + " | ".join(head + cols + ratios + ["bm Mops/s", spread_title])
                  + " |")
            print("|" + "--:|" * (len(head) + len(cols) + len(ratios) + 2))
            for cell in cells:
                row = list(cell)
                spreads = allocator_cells(row, w, cell, "ns_per_op", 1)
                mops, _ = value(w, bm, cell, "mops")
                row.append(fmt_num(mops, 1) if mops is not None else "n/a")
                row.append("/".join(spreads))
                print("| " + " | ".join(row) + " |")
        else:
            metrics = [
                ("held_kib", "all threads holding their 3 MiB (VmRSS)"),
                ("rss_kib", "resident at idle (VmRSS)"),
                ("per_thread_kib", "per idle thread: (VmRSS at idle - before) / 256"),
                ("anon_kib", "anonymous at idle (RssAnon)"),
                ("hwm_kib", "peak (VmHWM)"),
                ("exit_rss_kib", "after the threads exited (VmRSS)"),
                ("base_kib", "before the threads started (VmRSS)"),
                ("seconds", "time to malloc + free all and park, in seconds"),
            ]
            cell = cells[0] if cells else ("256",)
            cols = [a.name for a in used]
            ratios = (["bm/jemalloc"] if je else []) + (["bm/glibc"] if gl else [])
            print("| " + " | ".join(["measure"] + cols + ratios + [spread_title]) + " |")
            print("|---|" + "--:|" * (len(cols) + len(ratios) + 1))
            for key, title in metrics:
                if key == "held_kib" and w != "idle-hold":
                    continue
                row = [title]
                digits = 2 if key == "seconds" else (1 if key == "per_thread_kib" else 0)
                spreads = allocator_cells(row, w, cell, key, digits)
                row.append("/".join(spreads))
                print("| " + " | ".join(row) + " |")
        print()
        print("- noise during %s: %s" % (w, meters[w].text(cpus)))
        for a in used:
            if (w, a.name) in failed:
                print("- **%s failed in %s**, its runs stopped there: %s"
                      % (a.name, w, failed[(w, a.name)]))
        print()

    print("- %d runs in %.0f s" % (runs, time.monotonic() - started))
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
