"""Workload of test-python-dict.sh: dict- and string-heavy python.

Builds a large dict of strings and lists, transforms it (inversion,
grouping, comprehensions, deletions and re-insertions), joins it into one
big text and splits it back, round-trips part of it through json, and prints
counts and checksums that must be the same under any malloc. Run with
PYTHONMALLOC=malloc (and PYTHONHASHSEED=0) so every object is a malloc.
"""

import hashlib
import json
import sys
import zlib

sys.path.insert(0, sys.path[0])
import bmprobe  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo "
         "lima mike november oscar papa quebec romeo sierra tango uniform "
         "victor whiskey xray yankee zulu").split()
NW = len(WORDS)


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


# 1. A large dict: string keys, list values with strings of many sizes.
d = {}
for i in range(N):
    w = WORDS[(i * 7 + i // 13) % NW]
    d["k%07d-%s" % (i, w)] = [i, str(i * i), w * (1 + i % 9), "%x" % (i * 2654435761 % 2**32)]
print("built", len(d))

# 2. Transform: group by word, invert, filter with comprehensions.
groups = {}
for k, v in d.items():
    groups.setdefault(v[2][:5], []).append(k)
print("groups", len(groups), sorted((g, len(ks)) for g, ks in groups.items())[:3])
inverse = {v[3]: k for k, v in d.items()}
print("inverse", len(inverse))
odd = {k: v for k, v in d.items() if v[0] % 2}
lens = [len(v[2]) for v in odd.values()]
print("odd", len(odd), sum(lens), max(lens))

# 3. One big text, joined and split back, then rebuilt into a new dict.
text = "\n".join("%s=%s:%s:%s" % (k, v[1], v[2], v[3]) for k, v in d.items())
print("text", len(text), zlib.crc32(text.encode()))
rebuilt = {}
for line in text.split("\n"):
    k, rest = line.split("=", 1)
    sq, word, hx = rest.split(":")
    rebuilt[k] = (int(sq), word, hx)
assert len(rebuilt) == N
assert all(rebuilt[k][0] == int(v[1]) for k, v in d.items())
upper = {k.upper(): "%s;%s" % (w.upper(), hx[::-1]) for k, (sq, w, hx) in rebuilt.items()}
print("upper", len(upper), digest(*list(upper)[:1000]))
del text, rebuilt

# 4. Delete every third key, re-insert them with other values (holes in the
# dict's table, frees of lists and strings in a scattered order).
keys = list(d)
for k in keys[::3]:
    del d[k]
for k in keys[::3]:
    d[k] = [len(k), k[::-1], k.replace("k", "K") * 3]
print("after churn", len(d), list(d)[-1])

# 5. Replace, split and join on words; count words through a dict.
counts = {}
for v in d.values():
    for tok in str(v[2]).replace("a", " a ").split():
        counts[tok] = counts.get(tok, 0) + 1
top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
print("tokens", len(counts), top)

# 6. Nested structures through json.
sample = {k: {"v": v, "n": [str(x) for x in range(i % 20)]}
          for i, (k, v) in enumerate(list(d.items())[:20000])}
s = json.dumps(sample, sort_keys=True)
back = json.loads(s)
assert back == {k: {"v": list(v["v"]), "n": v["n"]} for k, v in sample.items()}
print("json", len(s), digest(s))

# 7. A checksum of everything left, in a canonical order.
h = hashlib.sha256()
for k in sorted(d):
    h.update(("%s=%r\n" % (k, d[k])).encode())
print("final", len(d), h.hexdigest())

bmprobe.probe("end")
