"""A Python workload for the benchmark suite (bench/suite.py): dicts of
strings, string building and splitting, JSON round trips, object churn -
what a web or data-processing service does. Run with PYTHONMALLOC=malloc so
every object comes from the allocator under test.

Usage: python3 py_workload.py N     (N records)
"""
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
records = {}
for i in range(n):
    key = "user:%08d" % i
    records[key] = {"id": i, "name": "name-%d" % (i * 7919 % 100003),
                    "tags": ["t%d" % (i % 17), "t%d" % (i % 29)], "score": (i * 31) % 1000}
text = "\n".join("%s,%s,%d" % (k, v["name"], v["score"]) for k, v in records.items())
fields = [line.split(",") for line in text.splitlines()]
by_score = {}
for key, name, score in fields:
    by_score.setdefault(int(score), []).append(name)
blob = json.dumps({k: records[k] for k in list(records)[: n // 4]})
back = json.loads(blob)
for i in range(0, n, 2):                    # churn: half the records replaced
    records["user:%08d" % i] = {"id": -i, "name": "x" * (i % 200)}
total = sum(len(v) for v in by_score.values()) + len(back) + len(records)
print(total)
