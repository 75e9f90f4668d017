"""Workload of test-python-threads.sh: objects made by threads that exit
while other threads still hold them, and freed there later.

Waves of short-lived producer threads build objects (dicts, lists,
strings, bytes) and hand them round-robin to long-lived consumer threads
through queues. A consumer keeps what it receives until the main thread
tells it, after joining the wave's producers (so the threads that allocated
the objects have exited), to let go of them. Each consumer also churns
objects of its own. The printed totals do not depend on scheduling, so they
must be the same under any malloc. Run with PYTHONMALLOC=malloc.
"""

import queue
import sys
import threading
import zlib

sys.path.insert(0, sys.path[0])
import bmprobe  # noqa: E402

WAVES = 12
PRODUCERS = 6          # per wave: 72 producer threads in all
PER_PRODUCER = 1500    # objects per producer
CONSUMERS = 4

RELEASE = object()
STOP = object()


def make(wave, prod, j):
    ident = "w%d-p%d-o%d" % (wave, prod, j)
    payload = [ident * (1 + j % 7) for _ in range(j % 5 + 1)]
    return {
        "id": ident,
        "payload": payload,
        "nums": list(range(j % 50)),
        "blob": (ident.encode() * (1 + j % 40))[: 64 + (j * 37) % 3000],
        "map": {str(k): ident[k:] for k in range(j % 9)},
    }


def weigh(obj):
    """A number that depends only on the object's content."""
    n = zlib.crc32(obj["id"].encode())
    n += sum(len(p) for p in obj["payload"]) + sum(obj["nums"])
    n += zlib.crc32(obj["blob"]) + sum(len(v) for v in obj["map"].values())
    return n


def producer(wave, prod, queues):
    for j in range(PER_PRODUCER):
        queues[(prod + j) % CONSUMERS].put(make(wave, prod, j))


class Consumer(threading.Thread):
    def __init__(self, q, idx):
        super().__init__(name="consumer-%d" % idx)
        self.q = q
        self.idx = idx
        self.held = []
        self.count = 0
        self.total = 0
        self.released = 0
        self.own = 0

    def run(self):
        mine = []
        while True:
            obj = self.q.get()
            if obj is STOP:
                break
            if obj is RELEASE:
                # Free everything received from the wave's producers, all of
                # which have exited by now.
                self.released += len(self.held)
                self.held = []
                mine = []
                continue
            self.count += 1
            self.total += weigh(obj)
            self.held.append(obj)
            # Objects of this thread's own: short-lived strings and lists.
            mine.append([obj["id"].upper(), obj["id"].split("-")])
            if len(mine) > 200:
                self.own += len(mine)
                mine = mine[100:]


def main():
    queues = [queue.Queue() for _ in range(CONSUMERS)]
    consumers = [Consumer(q, i) for i, q in enumerate(queues)]
    for c in consumers:
        c.start()
    for wave in range(WAVES):
        producers = [threading.Thread(target=producer, args=(wave, p, queues))
                     for p in range(PRODUCERS)]
        for t in producers:
            t.start()
        for t in producers:
            t.join()
        # The producers are gone; their objects live on in the consumers.
        for q in queues:
            q.put(RELEASE)
    for q in queues:
        q.put(STOP)
    for c in consumers:
        c.join()

    count = sum(c.count for c in consumers)
    total = sum(c.total for c in consumers)
    released = sum(c.released for c in consumers)
    expect = WAVES * PRODUCERS * PER_PRODUCER
    print("objects", count, "expected", expect)
    print("released", released)
    print("checksum", total % (1 << 64))
    for c in consumers:
        print("consumer", c.idx, "received", c.count)
    # The same checksum computed by one thread, objects made afresh.
    again = sum(weigh(make(w, p, j)) for w in range(WAVES)
                for p in range(PRODUCERS) for j in range(PER_PRODUCER))
    print("recomputed", again % (1 << 64))
    assert count == expect and released == expect and again == total
    print("threads ok")


main()
bmprobe.probe("end")
