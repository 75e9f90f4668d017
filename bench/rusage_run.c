/*
 * rusage-run - run a program and write its wall time, CPU time and peak RSS
 * to a file, for bench/suite.py.
 *
 * Why not wait4 from Python: a child forked (or vforked) by a big process
 * starts with the parent's resident set as its high-water mark, and exec
 * keeps it, so ru_maxrss would report Python's size for small programs.
 * This launcher is small: what its child inherits is noise (~1 MiB).
 * The rusage is the program's and that of the processes it waited for
 * (peak: the largest of them).
 *
 *   rusage-run FILE PROGRAM [ARGS...]
 *   FILE gets: wall=S cpu=S maxrss_kib=N status=N
 * The exit status is the program's (128+signal if it was killed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rusage-run FILE PROGRAM [ARGS...]\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("rusage-run: fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        fprintf(stderr, "rusage-run: cannot run %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) {
        perror("rusage-run: wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fprintf(f, "wall=%.6f cpu=%.6f maxrss_kib=%ld status=%d\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
            ru.ru_maxrss, code);
    fclose(f);
    return code;
}
