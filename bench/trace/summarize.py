#!/usr/bin/env python3
"""Summarise (and with --check, validate) a buddymalloc-trace v1 file.

    summarize.py [--check] [--markdown] TRACE [TRACE...]

TRACE may be plain text or xz-compressed (.xz). The summary gives the count of
each operation, a histogram of requested sizes by power of two, the peak of
live bytes (sum of the sizes asked for, as a replay would hold them), and the
lifetimes of the blocks that were freed, counted in operations.

--check replays the trace against a table of live IDs and fails (exit 1) on
the first few errors: a malformed line, an allocation into an ID that is still
live, a free or realloc of an ID that is not live, a size or alignment that is
not sane. It is what a replayer must be able to rely on.
"""

import argparse
import lzma
import sys

MAX_SIZE = 1 << 40        # anything larger is taken for a corrupt line
MAX_ID = 1 << 32


def open_trace(path):
    if path.endswith(".xz"):
        return lzma.open(path, "rt", encoding="ascii")
    return open(path, "rt", encoding="ascii")


def bucket(size):
    """0 for size 0, else k for 2^(k-1) <= size < 2^k (so bucket 1 is size 1)."""
    return size.bit_length()


def bucket_label(k):
    """Bucket k as the half-open range it counts: "0", "1", "2-3", "1K-2K"."""
    if k == 0:
        return "0"
    lo = 1 << (k - 1)
    if lo == 1:
        return "1"
    if lo < 1024:
        return f"{lo}-{2 * lo - 1}"
    return f"{human(lo)}-{human(2 * lo)}"


def human(n):
    """A power of two of at least 1K, as 1K, 64K, 2M, 1G."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n >> shift}{unit}"
    return str(n)


class Stats:
    def __init__(self):
        self.ops = {k: 0 for k in "mcrfa"}
        self.hist_new = {}       # sizes of m, c, a
        self.hist_realloc = {}   # new sizes of r
        self.live = {}           # id -> (size, birth op index)
        self.live_bytes = 0
        self.peak_bytes = 0
        self.peak_blocks = 0
        self.peak_at = 0
        self.max_id = -1
        self.bytes_asked = 0
        self.lifetimes = []      # in ops, of the blocks freed (realloc ends none)
        self.aligns = {}
        self.comments = []
        self.errors = []
        self.n = 0

    def error(self, lineno, msg):
        if len(self.errors) < 10:
            self.errors.append(f"line {lineno}: {msg}")
        else:
            self.errors.append(None)


def parse(path, check):
    st = Stats()
    live = st.live
    ops = st.ops
    hist_new = st.hist_new
    hist_re = st.hist_realloc
    lifetimes = st.lifetimes
    seen_header = False
    with open_trace(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("#"):
                if lineno == 1:
                    seen_header = line.strip() == "# buddymalloc-trace v1"
                st.comments.append(line.rstrip())
                continue
            parts = line.split()
            if not parts:
                continue
            op = parts[0]
            try:
                nums = [int(x) for x in parts[1:]]
            except ValueError:
                st.error(lineno, f"not a number in {line.strip()!r}")
                continue
            if op not in ops or len(nums) != {"m": 2, "c": 2, "r": 3, "f": 1, "a": 3}[op]:
                st.error(lineno, f"malformed {line.strip()!r}")
                continue
            if any(x < 0 for x in nums) or nums[0] >= MAX_ID:
                st.error(lineno, f"bad number in {line.strip()!r}")
                continue
            st.n += 1
            ops[op] += 1
            i = nums[0]
            if op == "f":
                blk = live.pop(i, None)
                if blk is None:
                    st.error(lineno, f"free of ID {i}, which is not live")
                    continue
                st.live_bytes -= blk[0]
                lifetimes.append(st.n - blk[1])
                continue
            if op == "r":
                new, size = nums[1], nums[2]
                if new >= MAX_ID:
                    st.error(lineno, f"bad NEWID {new}")
                    continue
                blk = live.pop(i, None)
                if blk is None:
                    st.error(lineno, f"realloc of ID {i}, which is not live")
                    continue
                if new in live:
                    st.error(lineno, f"realloc into ID {new}, which is live")
                    live[i] = blk
                    continue
                st.live_bytes -= blk[0]
                hist_re[bucket(size)] = hist_re.get(bucket(size), 0) + 1
                i = new
                birth = blk[1]
            else:
                size = nums[-1]
                if i in live:
                    st.error(lineno, f"allocation into ID {i}, which is live")
                    continue
                if op == "a":
                    al = nums[1]
                    if al < 8 or al & (al - 1):
                        st.error(lineno, f"alignment {al} is not a power of two >= 8")
                    st.aligns[al] = st.aligns.get(al, 0) + 1
                hist_new[bucket(size)] = hist_new.get(bucket(size), 0) + 1
                birth = st.n
            if size >= MAX_SIZE:
                st.error(lineno, f"size {size} is not sane")
                continue
            st.bytes_asked += size
            live[i] = (size, birth)
            if i > st.max_id:
                st.max_id = i
            st.live_bytes += size
            if st.live_bytes > st.peak_bytes:
                st.peak_bytes = st.live_bytes
                st.peak_at = st.n
            if len(live) > st.peak_blocks:
                st.peak_blocks = len(live)
    if not seen_header:
        st.error(1, "first line is not '# buddymalloc-trace v1'")
    if any(c.startswith("# totals: (not written") for c in st.comments):
        st.error(0, "the traced process did not exit normally: the trace may miss its end")
    if st.n == 0:
        st.error(0, "no operations")
    return st


def pct(a, b):
    return f"{100.0 * a / b:.1f}%" if b else "-"


def percentile(sorted_list, p):
    if not sorted_list:
        return 0
    return sorted_list[min(len(sorted_list) - 1, int(p * len(sorted_list)))]


def report(path, st, markdown):
    out = []
    name = path.rsplit("/", 1)[-1]
    if markdown:
        out.append(f"#### {name}\n")
        out.append("```")
    else:
        out.append(f"== {name}")
    for c in st.comments:
        if c.startswith(("# program", "# recorded", "# totals")):
            out.append(c.rstrip())
    total = st.n
    ops = st.ops
    out.append(f"operations: {total}  (m {ops['m']}, c {ops['c']}, r {ops['r']}, "
               f"f {ops['f']}, a {ops['a']})")
    out.append(f"IDs used: {st.max_id + 1}; peak live: {st.peak_bytes} bytes "
               f"({st.peak_bytes / 1048576:.1f} MiB) at op {st.peak_at}, "
               f"{st.peak_blocks} blocks at most")
    out.append(f"at the end: {len(st.live)} blocks live, {st.live_bytes} bytes; "
               f"bytes asked for in all: {st.bytes_asked}")
    if st.aligns:
        out.append("alignments: " + ", ".join(f"{a}: {n}" for a, n in sorted(st.aligns.items())))
    lt = sorted(st.lifetimes)
    if lt:
        out.append("lifetime of freed blocks, in operations: "
                   f"median {percentile(lt, 0.5)}, 90% {percentile(lt, 0.9)}, "
                   f"99% {percentile(lt, 0.99)}, max {lt[-1]}")
    out.append("")
    out.append("requested sizes by power of two (2-3: 2 <= size <= 3; 1K-2K: 1024 <= size < 2048):")
    out.append(f"{'size':>12} {'m/c/a':>9} {'%':>6} {'cum%':>6} {'r (new size)':>13} {'%':>6}")
    n_new = sum(st.hist_new.values())
    n_re = sum(st.hist_realloc.values())
    keys = sorted(set(st.hist_new) | set(st.hist_realloc))
    cum = 0
    for k in keys:
        a = st.hist_new.get(k, 0)
        r = st.hist_realloc.get(k, 0)
        cum += a
        out.append(f"{bucket_label(k):>12} {a:>9} {pct(a, n_new):>6} {pct(cum, n_new):>6} "
                   f"{r:>13} {pct(r, n_re):>6}")
    if markdown:
        out.append("```")
    print("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="validate the trace; exit 1 on any error")
    ap.add_argument("--markdown", action="store_true",
                    help="print for README.md (a heading and a code block)")
    ap.add_argument("traces", nargs="+")
    args = ap.parse_args()
    failed = False
    for path in args.traces:
        st = parse(path, args.check)
        report(path, st, args.markdown)
        if args.check:
            errs = [e for e in st.errors if e]
            more = len(st.errors) - len(errs)
            name = path.rsplit("/", 1)[-1]
            if st.errors:
                failed = True
                for e in errs:
                    print(f"{name}: {e}", file=sys.stderr)
                if more:
                    print(f"{name}: ... and {more} more", file=sys.stderr)
            else:
                print(f"check: {name}: OK ({st.n} operations, no unknown or live-reused ID, "
                      f"sizes and alignments sane)")
        print()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
