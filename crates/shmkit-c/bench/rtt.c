/* rtt: round trips of 8-byte messages between two processes, from C:
 *   shmkit  libshmkit SPSC channel pair, default wait (spin, then futex)
 *   ready   the same, every wait an arm + poll(2) on the readiness fd
 *   futex   the floor for sleeping: a word per direction in shared memory,
 *           every wait a shared FUTEX_WAIT, every post a FUTEX_WAKE
 *   pipe    two pipes
 * The two processes are pinned to two CPUs, as `shmkit bench` pins its ends.
 * Usage: rtt MODE [SECONDS]   prints: MODE p50_ns mean_ns round_trips
 * Build: gcc -O2 -std=c11 rtt.c $(pkg-config --cflags --libs shmkit)
 * (crates/shmkit-c/bench/run.py runs it beside `shmkit bench`). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

#define STOP UINT64_MAX
#define MAX_SAMPLES 4000000

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "rtt: %s: %d %s\n", what, rc, shmkit_last_error());
    exit(1);
}

/* One end: send and receive 8-byte values. */
struct end {
    int mode; /* 0 shmkit, 1 ready, 2 futex, 3 pipe */
    shmkit_sender *tx;
    shmkit_receiver *rx;
    int fd;
    uint32_t *out_word, *in_word; /* futex */
    uint32_t seen;
    int wfd, rfd; /* pipe */
};

static void end_send(struct end *e, uint64_t v) {
    int rc;
    switch (e->mode) {
    case 0:
    case 1:
        if ((rc = shmkit_send(e->tx, &v, sizeof v, -1)) < 0)
            die("send", rc);
        break;
    case 2:
        __atomic_store_n(e->out_word, (uint32_t)v, __ATOMIC_RELEASE);
        syscall(SYS_futex, e->out_word, FUTEX_WAKE, 1, NULL, NULL, 0);
        break;
    default:
        if (write(e->wfd, &v, sizeof v) != sizeof v)
            die("write", -errno);
    }
}

static uint64_t end_recv(struct end *e) {
    uint64_t v = 0;
    size_t len;
    int rc, ready;
    switch (e->mode) {
    case 0:
        if ((rc = shmkit_recv(e->rx, &v, sizeof v, &len, -1)) < 0)
            die("recv", rc);
        return v;
    case 1:
        for (;;) {
            rc = shmkit_recv(e->rx, &v, sizeof v, &len, 0);
            if (rc == 0)
                return v;
            if (rc != -EAGAIN)
                die("recv", rc);
            if ((rc = shmkit_receiver_arm(e->rx, &ready)) < 0)
                die("arm", rc);
            if (!ready) {
                struct pollfd p = {.fd = e->fd, .events = POLLIN, .revents = 0};
                poll(&p, 1, 250);
            }
        }
    case 2:
        for (;;) {
            uint32_t w = __atomic_load_n(e->in_word, __ATOMIC_ACQUIRE);
            if (w != e->seen) {
                e->seen = w;
                return w == 0xffffffffu ? STOP : w;
            }
            syscall(SYS_futex, e->in_word, FUTEX_WAIT, w, NULL, NULL, 0);
        }
    default:
        if (read(e->rfd, &v, sizeof v) != sizeof v)
            die("read", -errno);
        return v;
    }
}

static void open_end(struct end *e, const char *out_name, const char *in_name) {
    shmkit_channel *out, *in;
    int rc;
    if ((rc = shmkit_channel_open(out_name, &out)) < 0 || (rc = shmkit_channel_open(in_name, &in)) < 0)
        die("open", rc);
    if ((rc = shmkit_sender_open(out, &e->tx)) < 0 || (rc = shmkit_receiver_open(in, &e->rx)) < 0)
        die("connect", rc);
    if (e->mode == 1 && (rc = shmkit_receiver_fd(e->rx, &e->fd)) < 0)
        die("fd", rc);
    shmkit_channel_close(out);
    shmkit_channel_close(in);
}

/* Pins the calling process to the `nth` CPU it may run on (as `shmkit
 * bench` pins its two ends to two CPUs), if there is one. */
static void pin(int nth) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set) && seen++ == nth) {
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            sched_setaffinity(0, sizeof set, &set);
            return;
        }
    }
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *modes[] = {"shmkit", "ready", "futex", "pipe"};
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (argc > 1 && strcmp(argv[1], modes[i]) == 0)
            mode = i;
    if (mode < 0) {
        fprintf(stderr, "usage: rtt shmkit|ready|futex|pipe [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    char ab[64], ba[64];
    snprintf(ab, sizeof ab, "/shmkit-bench-c-%d-ab", (int)getpid());
    snprintf(ba, sizeof ba, "/shmkit-bench-c-%d-ba", (int)getpid());
    struct end a = {.mode = mode}, b = {.mode = mode};
    uint32_t *words = NULL;
    int p1[2], p2[2];
    if (mode <= 1) {
        shmkit_channel *c;
        int rc;
        if ((rc = shmkit_channel_create(ab, 4, 8, 0600, SHMKIT_SPSC, &c)) < 0)
            die("create", rc);
        shmkit_channel_close(c);
        if ((rc = shmkit_channel_create(ba, 4, 8, 0600, SHMKIT_SPSC, &c)) < 0)
            die("create", rc);
        shmkit_channel_close(c);
    } else if (mode == 2) {
        words = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (words == MAP_FAILED)
            die("mmap", -errno);
        a.out_word = &words[0];
        a.in_word = &words[16];
        b.out_word = &words[16];
        b.in_word = &words[0];
    } else {
        if (pipe(p1) < 0 || pipe(p2) < 0)
            die("pipe", -errno);
        a.wfd = p1[1];
        b.rfd = p1[0];
        b.wfd = p2[1];
        a.rfd = p2[0];
    }
    pid_t child = fork();
    if (child < 0)
        die("fork", -errno);
    if (child == 0) {
        pin(1);
        if (mode <= 1)
            open_end(&b, ba, ab);
        for (;;) {
            uint64_t v = end_recv(&b);
            if (v == STOP)
                break;
            end_send(&b, v);
        }
        if (mode <= 1) {
            shmkit_sender_close(b.tx);
            shmkit_receiver_close(b.rx);
        }
        _exit(0);
    }
    pin(0);
    if (mode <= 1)
        open_end(&a, ab, ba);
    uint64_t *samples = malloc(MAX_SAMPLES * sizeof *samples);
    size_t n = 0;
    uint64_t seq = 1, warm_end = now_ns() + 200000000u;
    uint64_t end_at = warm_end + (uint64_t)(seconds * 1e9), total = 0;
    for (;;) {
        uint64_t t0 = now_ns();
        if (t0 >= end_at || n == MAX_SAMPLES)
            break;
        end_send(&a, seq);
        uint64_t v = end_recv(&a);
        uint64_t dt = now_ns() - t0;
        if (v != seq) {
            fprintf(stderr, "rtt: got %llu, sent %llu\n", (unsigned long long)v, (unsigned long long)seq);
            return 1;
        }
        seq = (seq + 1) & 0x7fffffffu; /* fits the futex word; never STOP */
        if (seq == 0)
            seq = 1;
        if (t0 >= warm_end) {
            samples[n++] = dt;
            total += dt;
        }
    }
    end_send(&a, mode == 2 ? 0xffffffffu : STOP);
    waitpid(child, NULL, 0);
    if (mode <= 1) {
        shmkit_sender_close(a.tx);
        shmkit_receiver_close(a.rx);
        shmkit_unlink(ab);
        shmkit_unlink(ba);
    }
    qsort(samples, n, sizeof *samples, cmp);
    printf("%s %llu %llu %zu\n", modes[mode], n ? (unsigned long long)samples[n / 2] : 0ull,
           n ? (unsigned long long)(total / n) : 0ull, n);
    free(samples);
    return 0;
}
