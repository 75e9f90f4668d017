// C++ under buddymalloc (linked with -lbuddymalloc): every form of operator
// new and delete is served by it, std::bad_alloc and the new-handler work
// through its C operators, and a sized delete with the wrong size stops the
// program with a report. Prints "N passed, M failed".
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "buddymalloc.h"
#include "plain_test.h"

static uint64_t small_allocs()
{
    struct bm_malloc_stats s;
    bm_malloc_stats(&s);
    return s.small_allocs;
}

struct alignas(64) Line { char c[64]; };
struct alignas(4096) Page { char c[4096]; };

static int handler_calls;
static void handler()
{
    handler_calls++;
    std::set_new_handler(nullptr);      // nothing to free: give up
}

// Run f in a child; its stderr and whether it died of SIGABRT.
template <class F> static std::string dies_with(F f)
{
    int fds[2];
    if (pipe(fds))
        return "pipe failed";
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        f();
        _exit(0);
    }
    close(fds[1]);
    std::string err;
    char buf[512];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
        err.append(buf, (size_t)n);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        return "did not abort";
    return err;
}

int main()
{
    // every form is ours: the small-object counter moves
    uint64_t before = small_allocs();
    int *a = new int(7);
    int *b = new int[10];
    int *c = new (std::nothrow) int(3);
    int *d = new (std::nothrow) int[5];
    CHECK(small_allocs() - before == 4, "4 news counted as %llu",
          (unsigned long long)(small_allocs() - before));
    CHECK(bm_malloc_usable_size(b) == 48, "new int[10] is a 48-byte block");
    delete a;
    delete[] b;
    delete c;
    delete[] d;

    Line *l = new Line;
    Page *pg = new Page[3];
    Line *ln = new (std::nothrow) Line[2];
    CHECK((reinterpret_cast<uintptr_t>(l) & 63) == 0, "aligned new 64");
    CHECK((reinterpret_cast<uintptr_t>(pg) & 4095) == 0, "aligned new[] 4096");
    CHECK(ln && (reinterpret_cast<uintptr_t>(ln) & 63) == 0, "aligned nothrow new[] 64");
    delete l;
    delete[] pg;
    delete[] ln;
    void *big = ::operator new(3 << 20, std::align_val_t(1 << 20));
    CHECK((reinterpret_cast<uintptr_t>(big) & ((1 << 20) - 1)) == 0, "aligned new 1 MiB");
    ::operator delete(big, 3 << 20, std::align_val_t(1 << 20));

    // sized delete with the right size, small and large
    void *s1 = ::operator new(100);
    ::operator delete(s1, 100);
    void *s2 = ::operator new(100000);
    ::operator delete(s2, 100000);
    void *s3 = ::operator new(10 << 20);
    ::operator delete(s3, 10 << 20);

    // failure: bad_alloc, nothrow NULL, the handler first
    std::string err;
    bool threw = false;
    try {
        void *p = ::operator new(size_t(1) << 62);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw, "operator new(2^62) throws std::bad_alloc");
    CHECK(::operator new(size_t(1) << 62, std::nothrow) == nullptr, "nothrow new(2^62) is null");
    std::set_new_handler(handler);
    threw = false;
    try {
        int *p = new int[size_t(1) << 60];
        delete[] p;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw && handler_calls == 1, "the new-handler ran once (%d), then bad_alloc", handler_calls);

    // sizes near SIZE_MAX (issue 14): every form fails cleanly, none wraps
    // around to a small block
    const size_t huge_sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX - 4096,
                                 size_t(PTRDIFF_MAX) + 1, size_t(PTRDIFF_MAX)};
    for (size_t n : huge_sizes) {
        threw = false;
        try {
            void *p = ::operator new[](n);
            ::operator delete[](p);
        } catch (const std::bad_alloc &) {
            threw = true;
        }
        CHECK(threw, "operator new[](%zu) throws std::bad_alloc", n);
        CHECK(::operator new[](n, std::nothrow) == nullptr, "nothrow new[](%zu) is null", n);
        threw = false;
        try {
            void *p = ::operator new(n, std::align_val_t(64));
            ::operator delete(p, std::align_val_t(64));
        } catch (const std::bad_alloc &) {
            threw = true;
        }
        CHECK(threw, "aligned new(%zu, 64) throws std::bad_alloc", n);
        CHECK(::operator new[](n, std::align_val_t(4096), std::nothrow) == nullptr,
              "aligned nothrow new[](%zu, 4096) is null", n);
    }
    for (int shift : {47, 62, 63}) {
        size_t al = size_t(1) << shift;
        CHECK(::operator new(100, std::align_val_t(al), std::nothrow) == nullptr,
              "nothrow new(100) aligned to 2^%d is null", shift);
    }
    // a sized delete with a size near SIZE_MAX is a wrong size, reported
    for (size_t n : {SIZE_MAX, SIZE_MAX - 4095, size_t(PTRDIFF_MAX) + 1}) {
        static size_t bad;
        bad = n;
        err = dies_with([] {
            void *p = ::operator new(100000);
            ::operator delete(p, bad);
        });
        CHECK(err.find("operator delete(0x") != std::string::npos &&
                  err.find("wrong sized free") != std::string::npos,
              "sized delete of %zu for a run: %s", n, err.c_str());
        err = dies_with([] {
            void *p = ::operator new[](48);
            ::operator delete[](p, bad);
        });
        CHECK(err.find("operator delete[](0x") != std::string::npos &&
                  err.find("wrong sized free") != std::string::npos,
              "sized delete[] of %zu for 48 bytes: %s", n, err.c_str());
        err = dies_with([] {
            void *p = ::operator new(64, std::align_val_t(64));
            ::operator delete(p, bad, std::align_val_t(64));
        });
        CHECK(err.find("operator delete(0x") != std::string::npos,
              "aligned sized delete of %zu: %s", n, err.c_str());
    }

    // every block is 16-aligned, new char[1] included
    size_t misaligned = 0;
    for (size_t n = 1; n <= 1024; n++) {
        char *c = new char[n];
        misaligned += (reinterpret_cast<uintptr_t>(c) & 15) != 0;
        delete[] c;
    }
    CHECK(misaligned == 0, "new char[1..1024]: %zu blocks not 16-aligned", misaligned);

    // the STL at work
    before = small_allocs();
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 20000; i++)
        m["key " + std::to_string(i)].push_back(i);
    auto sp = std::make_shared<std::vector<std::string>>(1000, "shared");
    long sum = 0;
    for (auto &kv : m)
        sum += kv.second[0];
    CHECK(sum == 19999L * 20000 / 2 && sp->size() == 1000, "STL containers");
    CHECK(small_allocs() - before >= 40000, "the STL allocates through buddymalloc (%llu)",
          (unsigned long long)(small_allocs() - before));
    m.clear();

    // wrong sized delete: reported with the function and the address
    err = dies_with([] {
        int *p = new int[10];
        ::operator delete[](p, 200);
    });
    CHECK(err.find("buddymalloc: operator delete[](0x") != std::string::npos &&
              err.find("wrong sized free") != std::string::npos,
          "sized delete of 200 for 40 bytes: %s", err.c_str());
    err = dies_with([] {
        void *p = ::operator new(100000);
        ::operator delete(p, 50000);
    });
    CHECK(err.find("operator delete(0x") != std::string::npos, "large sized delete: %s",
          err.c_str());
    err = dies_with([] {
        int x;
        delete &x;
    });
    CHECK(err.find("operator delete(0x") != std::string::npos, "delete of a stack address: %s",
          err.c_str());

    CHECK(bm_check(2) == 0, "heap checker");
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
