#!/usr/bin/env python3
"""The Python program whose allocations python3.trace records.

A small, self-contained mix of what Python programs spend their allocations
on, on synthetic data made from a fixed seed (no input files, no network):

  logs     parse web-server log lines with a regex, aggregate per path,
           status and hour into dicts, take the top entries
  json     build nested records (users with orders), json.dumps, json.loads,
           group and filter them, serialise the report again
  index    tokenise documents into an inverted index (dict of sets), answer
           conjunctive queries, rank by term frequency
  csv      write rows with the csv module to an in-memory file, read them back
           into dataclass objects, sort and sum
  compile  generate the source of a module of classes and functions,
           compile() and exec it, call what it defines

Each phase prints one line with a digest of its result, the same under any
allocator, any PYTHONHASHSEED and with or without the tracer: record.sh runs
the script once untraced and once traced and compares the two outputs.

    python3 workload.py [--scale X] [--phases logs,json,...]

Run it with PYTHONMALLOC=malloc so that every object goes through malloc
(Python's own pymalloc arenas would otherwise hide small objects).
"""

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import random
import re
import string
from collections import Counter, defaultdict


def digest(obj):
    """A short hash of a canonical JSON rendering of obj."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def count(base, scale):
    return max(1, round(base * scale))


def make_words(rng, n):
    words = set()
    while len(words) < n:
        length = rng.choice((2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 11, 13))
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(length)))
    return sorted(words)


# ---------------------------------------------------------------- logs

LOG_RE = re.compile(
    r'(?P<ip>\d+\.\d+\.\d+\.\d+) - (?P<user>\S+) \[(?P<day>\d+)/(?P<mon>\w+)/(?P<year>\d+):'
    r'(?P<hour>\d+):(?P<min>\d+):(?P<sec>\d+) \+0000\] "(?P<method>[A-Z]+) (?P<path>\S+) '
    r'HTTP/1\.1" (?P<status>\d+) (?P<bytes>\d+) "(?P<agent>[^"]*)"')


def phase_logs(rng, words, scale):
    agents = [f"Mozilla/5.0 ({rng.choice(words)}; {rng.choice(words)}) {rng.choice(words)}/{i}.0"
              for i in range(40)]
    paths = ["/" + "/".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
             for _ in range(300)]
    lines = []
    for i in range(count(900, scale)):
        path = rng.choice(paths)
        if rng.random() < 0.3:
            path += "?q=" + "+".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        lines.append(
            f'10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} - '
            f'{rng.choice(words) if rng.random() < 0.2 else "-"} '
            f'[{rng.randint(1, 28):02d}/Mar/2024:{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:'
            f'{rng.randint(0, 59):02d} +0000] "{rng.choice(("GET", "GET", "GET", "POST", "PUT"))} '
            f'{path} HTTP/1.1" {rng.choice((200, 200, 200, 200, 304, 404, 500))} '
            f'{rng.randint(0, 200000)} "{rng.choice(agents)}"')
    text = "\n".join(lines)

    per_path = defaultdict(lambda: {"hits": 0, "bytes": 0, "status": Counter()})
    per_hour = Counter()
    queries = Counter()
    for line in text.splitlines():
        m = LOG_RE.match(line)
        if not m:
            continue
        g = m.groupdict()
        path, _, query = g["path"].partition("?")
        entry = per_path[path]
        entry["hits"] += 1
        entry["bytes"] += int(g["bytes"])
        entry["status"][g["status"]] += 1
        per_hour[int(g["hour"])] += 1
        if query:
            for term in query[2:].split("+"):
                queries[term] += 1
    top = sorted(per_path.items(), key=lambda kv: (-kv[1]["hits"], kv[0]))[:20]
    result = {
        "top": [[p, e["hits"], e["bytes"], sorted(e["status"].items())] for p, e in top],
        "hours": sorted(per_hour.items()),
        "queries": sorted(queries.items(), key=lambda kv: (-kv[1], kv[0]))[:30],
    }
    return digest(result)


# ---------------------------------------------------------------- json

def phase_json(rng, words, scale):
    users = []
    for uid in range(count(70, scale)):
        orders = []
        for oid in range(rng.randint(0, 8)):
            orders.append({
                "id": f"{uid}-{oid}",
                "items": [{"sku": rng.choice(words).upper() + str(rng.randint(1, 99)),
                           "qty": rng.randint(1, 5),
                           "price": round(rng.uniform(0.5, 250.0), 2)}
                          for _ in range(rng.randint(1, 6))],
                "status": rng.choice(("new", "paid", "shipped", "returned")),
                "note": " ".join(rng.choice(words) for _ in range(rng.randint(0, 12))),
            })
        users.append({
            "id": uid,
            "name": f"{rng.choice(words).title()} {rng.choice(words).title()}",
            "email": f"{rng.choice(words)}.{uid}@example.org",
            "tags": sorted({rng.choice(words) for _ in range(rng.randint(0, 5))}),
            "orders": orders,
        })
    blob = json.dumps(users)
    docs = json.loads(blob)
    # a second round trip through an indented rendering, as APIs and
    # configuration files do
    docs = json.loads(json.dumps(docs, indent=2))

    revenue = defaultdict(float)
    by_tag = defaultdict(list)
    for u in docs:
        spent = 0.0
        for o in u["orders"]:
            if o["status"] == "returned":
                continue
            total = sum(it["qty"] * it["price"] for it in o["items"])
            revenue[o["status"]] += total
            spent += total
        for t in u["tags"]:
            by_tag[t].append((round(spent, 2), u["id"]))
    report = {
        "revenue": {k: round(v, 2) for k, v in sorted(revenue.items())},
        "tags": {t: sorted(v, reverse=True)[:3] for t, v in sorted(by_tag.items())[:200]},
        "bytes": len(blob),
    }
    return digest(json.loads(json.dumps(report)))


# ---------------------------------------------------------------- index

def phase_index(rng, words, scale):
    # Zipf-like word choice: a few words are very common
    cum, acc = [], 0.0
    for i in range(len(words)):
        acc += 1.0 / (i + 1)
        cum.append(acc)
    docs = []
    for _ in range(count(300, scale)):
        sentence_count = rng.randint(1, 6)
        sentences = []
        for _ in range(sentence_count):
            ws = rng.choices(words, cum_weights=cum, k=rng.randint(4, 18))
            sentences.append(ws[0].capitalize() + " " + " ".join(ws[1:]) + rng.choice(".!?"))
        docs.append(" ".join(sentences))

    strip = str.maketrans("", "", ".!?,;")
    index = defaultdict(set)
    freq = []
    for doc_id, doc in enumerate(docs):
        tokens = doc.lower().translate(strip).split()
        counts = Counter(tokens)
        freq.append(counts)
        for tok in counts:
            index[tok].add(doc_id)

    answers = []
    for _ in range(count(150, scale)):
        terms = rng.sample(words[:300], rng.randint(1, 3))
        hits = set.intersection(*(index.get(t, set()) for t in terms))
        ranked = sorted(hits, key=lambda d: (-sum(freq[d][t] for t in terms), d))[:5]
        answers.append([terms, ranked])
    sizes = sorted(((t, len(s)) for t, s in index.items()), key=lambda kv: (-kv[1], kv[0]))[:50]
    return digest({"answers": answers, "sizes": sizes})


# ---------------------------------------------------------------- csv

@dataclasses.dataclass
class Row:
    city: str
    product: str
    units: int
    price: float
    comment: str


def phase_csv(rng, words, scale):
    cities = [w.title() for w in words[:60]]
    products = [w.upper() for w in words[60:200]]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["city", "product", "units", "price", "comment"])
    for _ in range(count(1400, scale)):
        w.writerow([rng.choice(cities), rng.choice(products), rng.randint(1, 40),
                    f"{rng.uniform(1, 500):.2f}",
                    ", ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))])
    buf.seek(0)
    reader = csv.DictReader(buf)
    rows = [Row(r["city"], r["product"], int(r["units"]), float(r["price"]), r["comment"])
            for r in reader]
    rows.sort(key=lambda r: (r.city, -r.units, r.product))
    per_city = defaultdict(lambda: [0, 0.0])
    for r in rows:
        acc = per_city[r.city]
        acc[0] += r.units
        acc[1] += r.units * r.price
    longest = max(rows, key=lambda r: (len(r.comment), r.comment))
    return digest({"cities": {c: [u, round(v, 2)] for c, (u, v) in sorted(per_city.items())},
                   "first": dataclasses.astuple(rows[0]),
                   "longest": dataclasses.asdict(longest)})


# ---------------------------------------------------------------- compile

def phase_compile(rng, words, scale):
    results = []
    for mod in range(count(4, scale)):
        names = rng.sample(words, 40)
        src = [f'"""generated module {mod}"""', "import math", ""]
        for i, name in enumerate(names[:20]):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            src.append(f"def {name}_{i}(x, y={b}):")
            src.append(f"    '''{' '.join(rng.sample(words, 6))}'''")
            src.append(f"    acc = [x * k + y for k in range({a}, {a + 12})]")
            src.append(f"    table = {{str(k): k ** 2 for k in acc if k % {a + 1}}}")
            src.append(f"    return sum(table.values()) + len('{name}' * {b})")
            src.append("")
        for i, name in enumerate(names[20:30]):
            src.append(f"class {name.title()}{i}:")
            src.append("    def __init__(self, n):")
            src.append("        self.items = list(range(n))")
            src.append(f"        self.label = '{name}-' + str(n)")
            src.append("    def total(self):")
            src.append(f"        return sum(math.isqrt(v * {i + 2}) for v in self.items)")
            src.append("    def __repr__(self):")
            src.append("        return f'<{self.label} {len(self.items)}>'")
            src.append("")
        text = "\n".join(src)
        code = compile(text, f"<generated {mod}>", "exec")
        ns = {}
        exec(code, ns)
        out = 0
        for key in sorted(ns):
            obj = ns[key]
            if isinstance(obj, type):
                inst = obj(50 + mod)
                out += inst.total() + len(repr(inst))
            elif callable(obj) and not key.startswith("__"):
                out += obj(mod)
        results.append(out)
    return digest(results)


PHASES = [("logs", phase_logs), ("json", phase_json), ("index", phase_index),
          ("csv", phase_csv), ("compile", phase_compile)]


def main():
    ap = argparse.ArgumentParser(description="the allocation workload of python3.trace")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies the amount of data of every phase")
    ap.add_argument("--phases", default=",".join(n for n, _ in PHASES),
                    help="comma-separated subset of: " + ", ".join(n for n, _ in PHASES))
    args = ap.parse_args()
    wanted = args.phases.split(",")
    rng = random.Random(20240301)
    words = make_words(rng, 2000)
    for name, fn in PHASES:
        if name in wanted:
            print(f"{name}: {fn(rng, words, args.scale)}", flush=True)


if __name__ == "__main__":
    main()
