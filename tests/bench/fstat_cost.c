/* What one open-file-cache hit's validation costs, kernel included (issue 19):
 * `fstat(2)` on a cached descriptor (what sluice does per hit) against the
 * cheapest fresh look at an inotify queue (a `read(2)` of an empty,
 * non-blocking inotify descriptor, and `ioctl(FIONREAD)` on it), which is what
 * inotify-based validation would need per request to see a change "at once"
 * (see BENCHMARKS.md, "Issue 19: the 4 KiB and 304 rows, instruction counts").
 *
 *   cc -O2 -o /tmp/fstat_cost tests/bench/fstat_cost.c && taskset -c 1 /tmp/fstat_cost [N]
 *
 * Prints ns per call, median of 9 rounds of N calls (default 1,000,000), each
 * variant interleaved round by round. Wall time: run it on an idle CPU. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  char path[] = "/tmp/fstat_cost_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, "x", 1) != 1) return 1;
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0 || inotify_add_watch(in, "/tmp", IN_MODIFY | IN_ATTRIB) < 0) return 1;
  /* Nothing else writes the watched file; drain anything /tmp has queued. */
  char buf[4096];
  while (read(in, buf, sizeof buf) > 0) {}
  enum { ROUNDS = 9, KINDS = 4 };
  const char *names[KINDS] = {"fstat (cached fd)", "read (empty inotify, EAGAIN)",
                              "ioctl FIONREAD (inotify)", "getppid (a bare syscall)"};
  double ns[KINDS][ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    for (int k = 0; k < KINDS; k++) {
      struct stat st;
      int avail;
      double t0 = now();
      for (long i = 0; i < n; i++) {
        switch (k) {
        case 0: fstat(fd, &st); break;
        case 1: (void)!read(in, buf, sizeof buf); break;
        case 2: ioctl(in, FIONREAD, &avail); break;
        case 3: getppid(); break;
        }
      }
      ns[k][r] = (now() - t0) / n;
    }
  }
  for (int k = 0; k < KINDS; k++) {
    qsort(ns[k], ROUNDS, sizeof(double), cmp);
    printf("%-30s %6.1f ns per call (median of %d x %ld; min %.1f, max %.1f)\n", names[k],
           ns[k][ROUNDS / 2], ROUNDS, n, ns[k][0], ns[k][ROUNDS - 1]);
  }
  unlink(path);
  return 0;
}
