"""Workload of test-python-multiprocessing.sh: multiprocessing with the fork
start method.

1. A Pool of 3 workers maps an allocation-heavy function over 48 inputs.
2. A Pool of 2 workers with maxtasksperchild=3: the pool's handler thread
   forks replacement workers while the parent's other threads (task and
   result handlers) are running.
3. Processes started one by one, each sending a large object back through
   a Queue.
Every result is checked against the same function computed in the parent;
the printed summary must be the same under any malloc. Run with
PYTHONMALLOC=malloc. With BM_PROBE_FILE set (buddymalloc runs), each worker
records the allocator's counters when it starts and when it exits, and runs
the heap checker then (bmprobe.py): workers leave through os._exit, so they
print no statistics at exit.
"""

import multiprocessing as mp
import multiprocessing.util as mputil
import sys
import zlib

sys.path.insert(0, sys.path[0])
import bmprobe  # noqa: E402


def work(n):
    d = {"%d:%d" % (n, i): str(i * n) * (1 + i % 6) for i in range(20000)}
    keys = sorted(d, key=lambda k: (d[k][-3:], k))
    text = "|".join(keys[: 5000])
    parts = text.split("|")
    words = [p.upper().replace(":", "-") for p in parts]
    return n, len(d), zlib.crc32(text.encode()), words[: 50 + n]


def big(n):
    return {"n": n, "rows": [[i, "row-%d-%d" % (n, i), bytes(range(i % 256))] for i in range(3000)]}


def worker_init(tag):
    if bmprobe.enabled():
        bmprobe.probe("worker-start-" + tag, check=False)
        mputil.Finalize(None, bmprobe.probe, args=("worker-end-" + tag,), exitpriority=100)


def send_big(q, n):
    worker_init("process")
    q.put(big(n))


def main():
    ctx = mp.get_context("fork")
    expected = {n: work(n) for n in range(48)}
    print("expected", len(expected), sum(r[2] for r in expected.values()) % 1000003)

    pool = ctx.Pool(3, initializer=worker_init, initargs=("map",))
    got = pool.map(work, range(48), chunksize=2)
    pool.close()
    pool.join()
    assert got == [expected[n] for n in range(48)], "pool.map results differ"
    print("map", len(got), sum(len(r[3]) for r in got))

    pool = ctx.Pool(2, initializer=worker_init, initargs=("maxtasks",), maxtasksperchild=3)
    got = sorted(pool.imap_unordered(work, range(0, 48, 3)))
    pool.close()
    pool.join()
    assert got == [expected[n] for n in range(0, 48, 3)], "imap_unordered results differ"
    print("imap_unordered", len(got), sum(r[1] for r in got))

    q = ctx.Queue()
    total = 0
    for n in range(4):
        p = ctx.Process(target=send_big, args=(q, n))
        p.start()
        obj = q.get()
        p.join()
        assert p.exitcode == 0, "process exit code %r" % p.exitcode
        assert obj == big(n), "object from process %d differs" % n
        total += len(obj["rows"])
    print("processes", total)
    print("multiprocessing ok")


if __name__ == "__main__":
    main()
    bmprobe.probe("parent-end")
