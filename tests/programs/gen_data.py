"""Input of the compressor tests: gen_data.py MIB > FILE.

MIB mebibytes, the same bytes on every run: log-like text lines with
pseudo-random fields (compressible), blocks of pseudo-random bytes (not
compressible) and copies of earlier stretches from far back (long-distance
matches). Run under the system's malloc, not the allocator under test.
"""

import random
import sys

size = int(sys.argv[1]) << 20
rng = random.Random(20240601)
words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()
levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
out = bytearray()
produced = []
t = 1700000000
while len(out) < size:
    kind = rng.random()
    if kind < 0.80:
        lines = []
        for _ in range(200):
            t += rng.randrange(0, 3)
            lines.append("%d %s [%s] %s %s id=%08x n=%d\n" % (
                t, rng.choice(levels), rng.choice(words), " ".join(rng.choices(words, k=rng.randrange(2, 9))),
                rng.choice(words).upper(), rng.getrandbits(32), rng.randrange(0, 100000)))
        chunk = "".join(lines).encode()
    elif kind < 0.90:
        chunk = rng.randbytes(rng.randrange(4096, 65536))
    elif len(out) > (1 << 20):
        start = rng.randrange(0, len(out) - 65536)
        chunk = bytes(out[start:start + rng.randrange(4096, 65536)])
    else:
        continue
    out += chunk
sys.stdout.buffer.write(bytes(out[:size]))
