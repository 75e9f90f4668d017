/*
 * fork from a signal handler, in a program linked with -lbuddymalloc, on
 * the model of glibc's tests (malloc/tst-mallocfork, tst-mallocfork2,
 * tst-mallocfork3, tst-malloc-fork-deadlock). One case per run, named by
 * the first argument:
 *
 *   nested   a SIGALRM handler forks while the same thread is inside its
 *            own fork (the child of that fork sends the signal);
 *   malloc   a single-threaded process: a SIGUSR1 handler forks while the
 *            thread is inside malloc or free, perhaps holding a lock;
 *   threads  the same with two other threads allocating meanwhile;
 *   stdio    threads fork while others read long lines (getline) and
 *            flush every stream (fflush(NULL)): no signal, stdio's locks.
 *            An iteration is a run of STDIO_RUN_MS that must then wind up.
 *
 * Each case runs in a worker process (a process group of its own) that
 * counts its iterations in shared memory; a supervisor that sees no
 * progress for HANG_MS kills the group, counts the iteration as hung and
 * starts a new worker after it. So a deadlock is a failure with a count,
 * never a stuck test. Plain C: prints "N passed, M failed".
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buddymalloc.h"
#include "plain_test.h"

#ifndef HANG_MS
/* No iteration done for this long: hung. Ten times what the slowest
 * iteration seen needs on a loaded two-core machine, so that only a real
 * deadlock counts, never a slow machine; an iteration is milliseconds. */
#define HANG_MS 10000
#endif
#define STDIO_RUN_MS 250
#define STDIO_HANG_MS 30000     /* stdio's own locks may starve a thread a while */
#define SLOTS 1009
#define MAX_SIZE 70000

/* Shared between the supervisor and its workers. */
struct progress {
    _Atomic long done;          /* iterations finished */
    _Atomic long errors;        /* a fork or a child that went wrong */
    _Atomic long inside;        /* signals that came while malloc/free ran */
    _Atomic long forks;         /* stdio: forks the threads made */
    _Atomic int armed;          /* the signalled thread went on since the last signal */
};
static struct progress *prog;

static long target;             /* iterations the worker must reach */
static volatile sig_atomic_t in_alloc, handled;

static void say(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

/* A child of the handler's fork: a little allocation (the child must be
 * usable when the handler did not interrupt the allocator), then out. */
static void handler_fork(int child_allocates)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (child_allocates)
            free(malloc(100));
        _exit(0);
    }
    if (pid < 0) {
        atomic_fetch_add(&prog->errors, 1);
        return;
    }
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (r != pid || !WIFEXITED(status) || WEXITSTATUS(status))
        atomic_fetch_add(&prog->errors, 1);
}

/* ---- nested: tst-mallocfork ------------------------------------------------ */

static void on_alrm(int sig)
{
    (void)sig;
    handler_fork(1);
    handled = 1;
}

static void work_nested(void)
{
    struct sigaction sa = { .sa_handler = on_alrm };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    free(malloc(sizeof(int)));
    while (atomic_load(&prog->done) < target) {
        handled = 0;
        pid_t parent = getpid();
        pid_t pid = fork();     /* its child signals us while we are in it */
        if (pid == 0) {
            kill(parent, SIGALRM);
            _exit(0);
        }
        if (pid < 0) {
            atomic_fetch_add(&prog->errors, 1);
            continue;
        }
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        while (!handled)        /* the signal is on its way */
            ;
        atomic_fetch_add(&prog->done, 1);
    }
}

/* ---- malloc, threads: tst-mallocfork2 and tst-mallocfork3 ------------------- */

static void on_usr1(int sig)
{
    (void)sig;
    if (in_alloc)
        atomic_fetch_add(&prog->inside, 1);
    /* The child does not allocate: the handler may have interrupted a
     * malloc holding a lock, and a fork child of a signal handler may only
     * call async-signal-safe functions. */
    handler_fork(0);
    atomic_fetch_add(&prog->done, 1);
}

/* Small blocks (slab slow paths: a heap's lock), runs of pages (pagesets,
 * zone locks) and now and then a huge block (the huge table's lock). */
static size_t pick(unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed);
    if (r % 97 == 0)
        return 3u << 20;
    return r % 4 ? 1 + r % 2048 : 1 + r % MAX_SIZE;
}

/* Senders signal only once the thread went on after the last signal (it
 * re-arms after each malloc and free): each signal lands at a new point, and
 * handlers, which fork, cannot follow one another and starve it. */
static void wait_armed(void)
{
    struct timespec d = { 0, 10000 };
    while (!atomic_exchange(&prog->armed, 0))
        nanosleep(&d, NULL);
}

static void churn(unsigned seed, _Atomic int *stop, int mark)
{
    static void *mine[SLOTS];
    void *local[SLOTS] = { 0 };
    void **slot = mark ? mine : local;
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        unsigned k = (unsigned)rand_r(&seed) % SLOTS;
        size_t n = pick(&seed);
        if (mark)
            in_alloc = 1;
        free(slot[k]);
        slot[k] = malloc(n);
        if (mark) {
            in_alloc = 0;
            atomic_store_explicit(&prog->armed, 1, memory_order_relaxed);
        }
        if (!slot[k])
            atomic_fetch_add(&prog->errors, 1);
        else
            memset(slot[k], 1, n < 64 ? n : 64);
    }
    for (unsigned k = 0; k < SLOTS; k++) {
        free(slot[k]);
        slot[k] = NULL;
    }
}

static _Atomic int stop_all;
static pthread_t main_thread;

static void block_usr1(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void *other_churn(void *arg)
{
    block_usr1();               /* the signal is for the main thread */
    churn((unsigned)(uintptr_t)arg, &stop_all, 0);
    return NULL;
}

/* Signals the main thread at a varied pace: every signal forks, so a
 * steady stream would leave the main thread no time to allocate. */
static void *sender(void *arg)
{
    (void)arg;
    block_usr1();
    unsigned seed = 5;
    while (!atomic_load(&stop_all)) {
        wait_armed();
        pthread_kill(main_thread, SIGUSR1);
        struct timespec d = { 0, 20000 + rand_r(&seed) % 300000 };
        nanosleep(&d, NULL);
    }
    return NULL;
}

/* The single-threaded case has its sender in another process (a thread
 * would make the process multi-threaded). */
static void process_sender(pid_t target_pid)
{
    unsigned seed = 5;
    for (;;) {
        wait_armed();
        if (kill(target_pid, SIGUSR1))
            _exit(0);
        struct timespec d = { 0, 20000 + rand_r(&seed) % 300000 };
        nanosleep(&d, NULL);
    }
}

static void *main_stopper(void *arg)
{
    (void)arg;
    while (atomic_load(&prog->done) < target)
        usleep(1000);
    atomic_store(&stop_all, 1);
    return NULL;
}

static void work_malloc(int threads)
{
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    main_thread = pthread_self();
    if (!threads) {
        pid_t me = getpid(), s = fork();
        if (s == 0)
            process_sender(me);
        /* the handler counts iterations; the loop checks them itself */
        unsigned seed = 1;
        void *slot[SLOTS] = { 0 };
        while (atomic_load(&prog->done) < target) {
            unsigned k = (unsigned)rand_r(&seed) % SLOTS;
            size_t n = pick(&seed);
            in_alloc = 1;
            free(slot[k]);
            slot[k] = malloc(n);
            in_alloc = 0;
            atomic_store_explicit(&prog->armed, 1, memory_order_relaxed);
            if (!slot[k])
                atomic_fetch_add(&prog->errors, 1);
        }
        kill(s, SIGKILL);
        waitpid(s, NULL, 0);
        signal(SIGUSR1, SIG_IGN);
        for (unsigned k = 0; k < SLOTS; k++)
            free(slot[k]);
        return;
    }
    pthread_t t[4];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, other_churn, (void *)(uintptr_t)(i + 7));
    pthread_create(&t[2], NULL, sender, NULL);
    pthread_create(&t[3], NULL, main_stopper, NULL);
    churn(1, &stop_all, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

/* ---- stdio: tst-malloc-fork-deadlock --------------------------------------- */

static char line_file[64];

static void *forker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_all)) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(17);
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 17)
            atomic_fetch_add(&prog->errors, 1);
        atomic_fetch_add(&prog->forks, 1);
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    FILE *f = fopen(line_file, "r");
    if (!f) {
        atomic_fetch_add(&prog->errors, 1);
        return NULL;
    }
    while (!atomic_load(&stop_all)) {
        rewind(f);
        char *line = NULL;
        size_t cap = 0;
        if (getline(&line, &cap, f) < 0)
            atomic_fetch_add(&prog->errors, 1);
        free(line);
    }
    fclose(f);
    return NULL;
}

static void *flusher(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_all))
        if (fflush(NULL))
            atomic_fetch_add(&prog->errors, 1);
    return NULL;
}

/* A deadlock is a run that does not wind up: stdio's locks are not fair,
 * and a flusher may wait long behind the readers, but not after they stop. */
static void work_stdio(void)
{
    while (atomic_load(&prog->done) < target) {
        pthread_t t[2 + 4 + 1];
        int n = 0;
        atomic_store(&stop_all, 0);
        for (int i = 0; i < 2; i++)
            pthread_create(&t[n++], NULL, forker, NULL);
        for (int i = 0; i < 4; i++)
            pthread_create(&t[n++], NULL, reader, NULL);
        pthread_create(&t[n++], NULL, flusher, NULL);
        usleep(STDIO_RUN_MS * 1000);
        atomic_store(&stop_all, 1);
        for (int i = 0; i < n; i++)
            pthread_join(t[i], NULL);
        atomic_fetch_add(&prog->done, 1);
    }
}

/* ---- the supervisor ------------------------------------------------------------ */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_watchdog(int sig)
{
    (void)sig;
    say("fork_signal_program: the supervisor itself ran out of time\n");
    _exit(2);
}

/* Runs the case until n iterations are done; returns the hung ones. */
static long supervise(const char *name, long n)
{
    long hung = 0;
    target = n;
    while (atomic_load(&prog->done) < n) {
        pid_t w = fork();
        if (w == 0) {
            setpgid(0, 0);
            if (!strcmp(name, "nested"))
                work_nested();
            else if (!strcmp(name, "malloc"))
                work_malloc(0);
            else if (!strcmp(name, "threads"))
                work_malloc(1);
            else
                work_stdio();
            _exit(0);
        }
        if (w < 0)
            return -1;
        setpgid(w, w);
        long seen = atomic_load(&prog->done), since = now_ms();
        int status;
        for (;;) {
            if (waitpid(w, &status, WNOHANG) == w)
                break;
            long d = atomic_load(&prog->done);
            if (d != seen) {
                seen = d;
                since = now_ms();
            } else if (now_ms() - since > (strcmp(name, "stdio") ? HANG_MS : STDIO_HANG_MS)) {
                kill(-w, SIGKILL);
                waitpid(w, &status, 0);
                hung++;
                atomic_fetch_add(&prog->done, 1);   /* skip the hung one */
                fprintf(stderr, "%s: hung at iteration %ld\n", name, d + 1);
                break;
            }
            usleep(2000);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && atomic_load(&prog->done) >= n)
            break;
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            fprintf(stderr, "%s: worker ended with status %#x\n", name, status);
            atomic_fetch_add(&prog->errors, 1);
            if (!WIFEXITED(status))
                atomic_fetch_add(&prog->done, 1);
        }
    }
    return hung;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "nested";
    long n = argc > 2 ? atol(argv[2]) : !strcmp(name, "stdio") ? 10 : 300;
    prog = mmap(NULL, sizeof *prog, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (prog == MAP_FAILED)
        return 1;
    if (!strcmp(name, "stdio")) {
        snprintf(line_file, sizeof line_file, "fork-signal-line-%d", (int)getpid());
        FILE *f = fopen(line_file, "w");
        if (!f)
            return 1;
        for (int i = 0; i < 50000; i++)
            fputc('x', f);
        fputc('\n', f);
        fclose(f);
    }
    signal(SIGALRM, on_watchdog);
    alarm(600);

    long t0 = now_ms();
    long hung = supervise(name, n);
    long ms = now_ms() - t0;
    alarm(0);
    if (line_file[0])
        unlink(line_file);
    printf("%s: %ld iterations, %ld hung, %ld errors, %ld signals inside malloc/free, "
           "%ld forks in threads, %ld ms\n", name, n, hung, atomic_load(&prog->errors),
           atomic_load(&prog->inside), atomic_load(&prog->forks), ms);
    CHECK(hung == 0, "%s: hung in %ld of %ld iterations", name, hung, n);
    CHECK(atomic_load(&prog->errors) == 0, "%s: %ld forks or children failed", name,
          atomic_load(&prog->errors));
    struct bm_malloc_stats st;
    bm_malloc_stats(&st);
    CHECK(st.small_allocs > 0, "buddymalloc served the program");
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
