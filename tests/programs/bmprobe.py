"""Optional look inside buddymalloc from the python workloads.

When the environment variable BM_PROBE_FILE names a file (the test sets it
for the buddymalloc runs only), probe(tag) appends one line to it:

    TAG pid=N small=A large=B huge=C heaps=H check=V

with the allocator's counters (bm_malloc_stats) and the number of heap
inconsistencies found by its checker (bm_check: 0 = consistent). The line
says "TAG pid=N missing" if buddymalloc is not in the process. Without
BM_PROBE_FILE nothing happens, so the workloads print the same under glibc.
Used where the statistics at exit cannot tell (processes that leave through
os._exit, such as multiprocessing's workers) and to run the heap checker.
"""

import os

_lib = None


def _load():
    global _lib
    if _lib is None:
        import ctypes
        lib = ctypes.CDLL(None)
        try:
            lib.bm_malloc_stats
            lib.bm_check.restype = ctypes.c_long
            lib.bm_check.argtypes = [ctypes.c_int]
        except AttributeError:
            lib = False
        _lib = lib
    return _lib


def enabled():
    return bool(os.environ.get("BM_PROBE_FILE"))


def probe(tag, check=True):
    path = os.environ.get("BM_PROBE_FILE")
    if not path:
        return
    import ctypes
    lib = _load()
    if not lib:
        line = "%s pid=%d missing\n" % (tag, os.getpid())
    else:
        # struct bm_malloc_stats: unsigned long heaps, then uint64_t
        # small_allocs, small_frees, small_active_bytes, large_allocs,
        # large_frees, large_bytes, huge_allocs, huge_frees, huge_live,
        # huge_bytes, ... (include/buddymalloc.h; 64-bit Linux).
        s = (ctypes.c_uint64 * 64)()  # room for fields added later
        if lib.bm_malloc_stats(ctypes.byref(s)) != 0:
            line = "%s pid=%d stats-failed\n" % (tag, os.getpid())
        else:
            bad = lib.bm_check(2) if check else 0
            line = "%s pid=%d small=%d large=%d huge=%d heaps=%d check=%d\n" % (
                tag, os.getpid(), s[1], s[4], s[7], s[0], bad)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short O_APPEND write: atomic
    finally:
        os.close(fd)
