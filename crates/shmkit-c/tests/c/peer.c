/* The C side of crates/shmkit-c/tests/c_api.rs: one program, one mode per
 * test. Every mode exits 0 on success and prints what failed otherwise. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "shmkit.h"

#define CHECK(call)                                                        \
    do {                                                                   \
        int rc_ = (call);                                                  \
        if (rc_ != 0) {                                                    \
            fprintf(stderr, "%s:%d: %s = %d: %s\n", __FILE__, __LINE__,    \
                    #call, rc_, shmkit_last_error());                      \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

static int failures = 0;
/* Polls on a readiness fd that ended by their timeout, not a wake-up. */
static long poll_timeouts = 0;

/* The call must fail with a negative code and leave a message. */
#define MUST_FAIL(call)                                                    \
    do {                                                                   \
        int rc_ = (call);                                                  \
        if (rc_ >= 0 || shmkit_last_error()[0] == '\0') {                  \
            fprintf(stderr, "%s:%d: %s = %d, expected an error\n",         \
                    __FILE__, __LINE__, #call, rc_);                       \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* send NAME N: N messages "c I", then disconnect. */
static int do_send(const char *name, long n) {
    shmkit_channel *ch;
    shmkit_sender *tx;
    CHECK(shmkit_channel_open(name, &ch));
    CHECK(shmkit_sender_open(ch, &tx));
    char msg[64];
    for (long i = 0; i < n; i++) {
        int len = snprintf(msg, sizeof msg, "c %ld", i);
        CHECK(shmkit_send(tx, msg, (size_t)len, 10000));
    }
    CHECK(shmkit_sender_close(tx));
    CHECK(shmkit_channel_close(ch));
    return 0;
}

/* stream NAME: messages "s I" for ever (until killed), zero copy. */
static int do_stream(const char *name) {
    shmkit_channel *ch;
    shmkit_sender *tx;
    CHECK(shmkit_channel_open(name, &ch));
    CHECK(shmkit_sender_open(ch, &tx));
    for (long i = 0;; i++) {
        void *buf;
        size_t cap;
        CHECK(shmkit_reserve(tx, 10000, &buf, &cap));
        int len = snprintf((char *)buf, cap, "s %ld", i);
        CHECK(shmkit_commit(tx, (size_t)len));
        if (i == 100) {
            printf("streaming\n");
            fflush(stdout);
        }
    }
}

/* Receives one message, waiting on the readiness fd when `use_fd`. */
static int recv_one(shmkit_receiver *rx, char *buf, size_t cap, size_t *len, int use_fd, int fd) {
    if (!use_fd)
        return shmkit_recv(rx, buf, cap, len, 10000);
    double deadline = now_s() + 10;
    for (;;) {
        int rc = shmkit_recv(rx, buf, cap, len, 0);
        if (rc != -EAGAIN || now_s() > deadline)
            return rc;
        int ready;
        rc = shmkit_receiver_arm(rx, &ready);
        if (rc < 0)
            return rc;
        if (!ready) {
            struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
            if (poll(&p, 1, 250) == 0)
                poll_timeouts++;
        }
    }
}

/* recv NAME N [poll]: N messages printed as lines. */
static int do_recv(const char *name, long n, int use_fd) {
    shmkit_channel *ch;
    shmkit_receiver *rx;
    CHECK(shmkit_channel_open(name, &ch));
    CHECK(shmkit_receiver_open(ch, &rx));
    int fd = -1;
    if (use_fd)
        CHECK(shmkit_receiver_fd(rx, &fd));
    printf("ready\n");
    fflush(stdout);
    char buf[1024];
    for (long i = 0; i < n; i++) {
        size_t len;
        CHECK(recv_one(rx, buf, sizeof buf - 1, &len, use_fd, fd));
        buf[len] = '\0';
        printf("%s\n", buf);
    }
    if (use_fd)
        printf("poll timeouts %ld\n", poll_timeouts);
    fflush(stdout);
    CHECK(shmkit_receiver_close(rx));
    CHECK(shmkit_channel_close(ch));
    return 0;
}

/* quiet NAME MS: armed on the readiness fd, no message comes: poll must
 * time out, and the wait must cost (almost) no CPU. Prints the CPU ms. */
static int do_quiet(const char *name, long ms) {
    shmkit_channel *ch;
    shmkit_receiver *rx;
    CHECK(shmkit_channel_open(name, &ch));
    CHECK(shmkit_receiver_open(ch, &rx));
    int fd, ready;
    CHECK(shmkit_receiver_fd(rx, &fd));
    CHECK(shmkit_receiver_arm(rx, &ready));
    if (ready) {
        fprintf(stderr, "ready with nothing sent\n");
        return 1;
    }
    double cpu0 = cpu_s();
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int got = poll(&p, 1, (int)ms);
    double cpu = cpu_s() - cpu0;
    printf("woken %d cpu_ms %.3f\n", got, cpu * 1e3);
    CHECK(shmkit_receiver_close(rx));
    CHECK(shmkit_channel_close(ch));
    return got == 0 ? 0 : 1;
}

/* errors NAME: every entry point given NULL, a wrong kind of handle, a
 * too-small buffer or a bad name returns an error. NAME is a channel
 * holding at least one message of more than 4 bytes. */
static int do_errors(const char *name) {
    shmkit_channel *ch;
    shmkit_receiver *rx;
    shmkit_sender *tx;
    CHECK(shmkit_channel_open(name, &ch));
    CHECK(shmkit_receiver_open(ch, &rx));
    CHECK(shmkit_sender_open(ch, &tx));
    void *wrong = (void *)ch; /* a handle of another kind */
    char small[4];
    size_t len = 0;
    uint64_t u64;
    int i;
    void *p;
    const void *cp;
    shmkit_channel_info info;

    /* Bad names, NULL names. */
    shmkit_channel *c2;
    MUST_FAIL(shmkit_channel_open(NULL, &c2));
    MUST_FAIL(shmkit_channel_open("a/b", &c2));
    MUST_FAIL(shmkit_channel_open("", &c2));
    MUST_FAIL(shmkit_channel_open("\xff\xfe", &c2));
    MUST_FAIL(shmkit_channel_open("/shmkit-test-does-not-exist-x", &c2));
    MUST_FAIL(shmkit_channel_open(name, NULL));
    MUST_FAIL(shmkit_channel_create(NULL, 4, 64, 0600, 0, &c2));
    MUST_FAIL(shmkit_channel_create("x/y", 4, 64, 0600, 0, &c2));
    MUST_FAIL(shmkit_channel_create(name, 4, 64, 0600, 0, &c2)); /* exists */
    MUST_FAIL(shmkit_channel_create("/shmkit-test-bad-cap", 0, 64, 0600, 0, &c2));
    MUST_FAIL(shmkit_channel_create("/shmkit-test-bad-flags", 4, 64, 0600, 99, &c2));
    shmkit_board *b;
    MUST_FAIL(shmkit_board_create(NULL, 64, 0600, &b));
    MUST_FAIL(shmkit_board_open("a/b", &b));
    shmkit_broadcast *bc;
    MUST_FAIL(shmkit_broadcast_create("a/b", 4, 64, 0600, &bc));
    MUST_FAIL(shmkit_broadcast_open(NULL, &bc));
    shmkit_object *o;
    MUST_FAIL(shmkit_object_open(NULL, SHMKIT_WRITE, 0600, 0, &o));
    MUST_FAIL(shmkit_object_open("a/b", SHMKIT_WRITE, 0600, 0, &o));
    MUST_FAIL(shmkit_object_open(name, 0x100, 0600, 0, &o));
    MUST_FAIL(shmkit_unlink(NULL));
    MUST_FAIL(shmkit_unlink("a/b"));

    /* NULL handles. */
    MUST_FAIL(shmkit_send(NULL, "x", 1, 0));
    MUST_FAIL(shmkit_send_batch(NULL, NULL, NULL, 0));
    MUST_FAIL(shmkit_reserve(NULL, 0, &p, &len));
    MUST_FAIL(shmkit_commit(NULL, 0));
    MUST_FAIL(shmkit_abort(NULL));
    MUST_FAIL(shmkit_recv(NULL, small, sizeof small, &len, 0));
    MUST_FAIL(shmkit_recv_batch(NULL, small, sizeof small, 1, &len, &len, 0));
    MUST_FAIL(shmkit_receive(NULL, 0, &cp, &len));
    MUST_FAIL(shmkit_release(NULL));
    MUST_FAIL(shmkit_receiver_fd(NULL, &i));
    MUST_FAIL(shmkit_receiver_arm(NULL, &i));
    MUST_FAIL(shmkit_channel_stats(NULL, &info));
    MUST_FAIL(shmkit_channel_unlink(NULL));
    MUST_FAIL(shmkit_sender_open(NULL, &tx));
    MUST_FAIL(shmkit_receiver_open(NULL, &rx));
    MUST_FAIL(shmkit_board_read(NULL, small, sizeof small, &len, &u64));
    MUST_FAIL(shmkit_board_version(NULL, &u64));
    MUST_FAIL(shmkit_board_wait(NULL, 0, 0));
    MUST_FAIL(shmkit_board_fd(NULL, &i));
    MUST_FAIL(shmkit_board_arm(NULL, 0, &i));
    MUST_FAIL(shmkit_board_unlink(NULL));
    MUST_FAIL(shmkit_board_write(NULL, "x", 1, NULL));
    MUST_FAIL(shmkit_board_writer_open(NULL, NULL));
    MUST_FAIL(shmkit_broadcast_unlink(NULL));
    MUST_FAIL(shmkit_publisher_open(NULL, NULL));
    MUST_FAIL(shmkit_publish(NULL, "x", 1, NULL));
    MUST_FAIL(shmkit_subscriber_open(NULL, NULL));
    MUST_FAIL(shmkit_subscriber_recv(NULL, small, sizeof small, &len, &u64, 0));
    MUST_FAIL(shmkit_subscriber_fd(NULL, &i));
    MUST_FAIL(shmkit_subscriber_arm(NULL, &i));
    MUST_FAIL(shmkit_object_size(NULL, &u64));
    MUST_FAIL(shmkit_object_unlink(NULL));
    MUST_FAIL(shmkit_object_map(NULL, 1, NULL));
    MUST_FAIL(shmkit_map_len(NULL, &len));
    MUST_FAIL(shmkit_map_ptr(NULL, &p));
    MUST_FAIL(shmkit_map_read(NULL, 0, small, 1));
    MUST_FAIL(shmkit_map_write(NULL, 0, "x", 1));
    MUST_FAIL(shmkit_mutex_init(NULL, 0, NULL));
    MUST_FAIL(shmkit_mutex_open(NULL, 0, NULL));
    MUST_FAIL(shmkit_mutex_lock(NULL, 0, NULL));
    MUST_FAIL(shmkit_mutex_consistent(NULL));
    MUST_FAIL(shmkit_mutex_unlock(NULL));
    MUST_FAIL(shmkit_semaphore_init(NULL, 0, 1, NULL));
    MUST_FAIL(shmkit_semaphore_open(NULL, 0, NULL));
    MUST_FAIL(shmkit_semaphore_wait(NULL, 0));
    MUST_FAIL(shmkit_semaphore_post(NULL));
    MUST_FAIL(shmkit_semaphore_value(NULL, NULL));

    /* Wrong kinds: a channel handle where others are expected. */
    MUST_FAIL(shmkit_send((shmkit_sender *)wrong, "x", 1, 0));
    MUST_FAIL(shmkit_reserve((shmkit_sender *)wrong, 0, &p, &len));
    MUST_FAIL(shmkit_recv((shmkit_receiver *)wrong, small, sizeof small, &len, 0));
    MUST_FAIL(shmkit_receive((shmkit_receiver *)wrong, 0, &cp, &len));
    MUST_FAIL(shmkit_receiver_fd((shmkit_receiver *)wrong, &i));
    MUST_FAIL(shmkit_receiver_close((shmkit_receiver *)wrong));
    MUST_FAIL(shmkit_sender_close((shmkit_sender *)wrong));
    MUST_FAIL(shmkit_board_read((shmkit_board *)wrong, small, sizeof small, &len, &u64));
    MUST_FAIL(shmkit_board_close((shmkit_board *)wrong));
    MUST_FAIL(shmkit_board_write((shmkit_board_writer *)wrong, "x", 1, NULL));
    MUST_FAIL(shmkit_publish((shmkit_publisher *)wrong, "x", 1, NULL));
    MUST_FAIL(shmkit_subscriber_recv((shmkit_subscriber *)wrong, small, sizeof small, &len, &u64, 0));
    MUST_FAIL(shmkit_broadcast_close((shmkit_broadcast *)wrong));
    MUST_FAIL(shmkit_object_size((shmkit_object *)wrong, &u64));
    MUST_FAIL(shmkit_map_len((shmkit_map *)wrong, &len));
    MUST_FAIL(shmkit_mutex_lock((shmkit_mutex *)wrong, 0, NULL));
    MUST_FAIL(shmkit_semaphore_post((shmkit_semaphore *)wrong));
    MUST_FAIL(shmkit_channel_stats((shmkit_channel *)(void *)rx, &info));
    MUST_FAIL(shmkit_sender_open((shmkit_channel *)(void *)tx, &tx));

    /* NULL outputs and buffers, bad timeouts. */
    MUST_FAIL(shmkit_send(tx, NULL, 5, 0));
    MUST_FAIL(shmkit_send(tx, "x", 1, -5));
    MUST_FAIL(shmkit_recv(rx, small, sizeof small, NULL, 0));
    MUST_FAIL(shmkit_receiver_fd(rx, NULL));
    MUST_FAIL(shmkit_channel_stats(ch, NULL));
    MUST_FAIL(shmkit_commit(tx, 0)); /* nothing reserved */
    MUST_FAIL(shmkit_release(rx));   /* nothing held */

    /* A too-small buffer: -EMSGSIZE, the needed size, the message kept. */
    int rc = shmkit_recv(rx, small, sizeof small, &len, 1000);
    if (rc != -EMSGSIZE || len <= sizeof small) {
        fprintf(stderr, "small buffer: rc %d len %zu\n", rc, len);
        failures++;
    }
    char big[1024];
    size_t got;
    rc = shmkit_recv(rx, big, sizeof big, &got, 0);
    if (rc != 0 || got != len) {
        fprintf(stderr, "kept message: rc %d len %zu, wanted %zu\n", rc, got, len);
        failures++;
    }
    MUST_FAIL(shmkit_recv_batch(rx, small, sizeof small, 1, &len, &len, 0)); /* stride < max */

    CHECK(shmkit_sender_close(tx));
    CHECK(shmkit_receiver_close(rx));
    CHECK(shmkit_channel_close(ch));
    /* Closing NULL is fine. */
    CHECK(shmkit_channel_close(NULL));
    printf("failures %d\n", failures);
    return failures == 0 ? 0 : 1;
}

/* selftest PREFIX: everything in one process, everything closed and
 * removed at the end (run under valgrind). */
static int do_selftest(const char *prefix) {
    char name[256];
    /* Channel: send, batch, zero copy both ways, recv, stats. */
    snprintf(name, sizeof name, "%s-chan", prefix);
    shmkit_channel *ch;
    shmkit_sender *tx;
    shmkit_receiver *rx;
    CHECK(shmkit_channel_create(name, 8, 128, 0600, 0, &ch));
    CHECK(shmkit_sender_open(ch, &tx));
    CHECK(shmkit_receiver_open(ch, &rx));
    CHECK(shmkit_send(tx, "hello", 5, 0));
    const void *msgs[2] = {"one", "two!"};
    size_t lens[2] = {3, 4};
    CHECK(shmkit_send_batch(tx, msgs, lens, 2));
    void *slot;
    size_t cap;
    CHECK(shmkit_reserve(tx, 0, &slot, &cap));
    memcpy(slot, "zero", 4);
    CHECK(shmkit_commit(tx, 4));
    char buf[128];
    size_t len;
    CHECK(shmkit_recv(rx, buf, sizeof buf, &len, 0));
    if (len != 5 || memcmp(buf, "hello", 5) != 0)
        return 2;
    char area[2 * 128];
    size_t blens[2], count;
    CHECK(shmkit_recv_batch(rx, area, 128, 2, blens, &count, 0));
    if (count != 2 || blens[1] != 4 || memcmp(area + 128, "two!", 4) != 0)
        return 3;
    const void *data;
    CHECK(shmkit_receive(rx, 0, &data, &len));
    if (len != 4 || memcmp(data, "zero", 4) != 0)
        return 4;
    if (shmkit_recv(rx, buf, sizeof buf, &len, 0) != -EBUSY)
        return 5;
    CHECK(shmkit_release(rx));
    if (shmkit_recv(rx, buf, sizeof buf, &len, 0) != -EAGAIN)
        return 6;
    if (shmkit_recv(rx, buf, sizeof buf, &len, 20) != -ETIMEDOUT)
        return 7;
    int fd, ready;
    CHECK(shmkit_receiver_fd(rx, &fd));
    CHECK(shmkit_receiver_arm(rx, &ready));
    CHECK(shmkit_send(tx, "wake", 4, 0));
    struct pollfd pf = {.fd = fd, .events = POLLIN, .revents = 0};
    if (ready || poll(&pf, 1, 5000) != 1)
        return 8;
    CHECK(shmkit_recv(rx, buf, sizeof buf, &len, 0));
    shmkit_channel_info info;
    CHECK(shmkit_channel_stats(ch, &info));
    if (info.capacity != 8 || info.sent != 5 || info.received != 5)
        return 9;
    CHECK(shmkit_sender_close(tx));
    /* An event loop learns the sender left from the arm, within a slice
     * or two of polling. */
    int arm_rc = 0;
    for (int tries = 0; tries < 40 && arm_rc == 0; tries++) {
        arm_rc = shmkit_receiver_arm(rx, &ready);
        if (arm_rc == 0 && !ready)
            poll(&pf, 1, 250);
    }
    if (arm_rc != -EPIPE)
        return 17;
    if (shmkit_recv(rx, buf, sizeof buf, &len, 1000) != -EPIPE)
        return 10;
    CHECK(shmkit_receiver_close(rx));
    CHECK(shmkit_channel_unlink(ch));
    CHECK(shmkit_channel_close(ch));

    /* Board. */
    snprintf(name, sizeof name, "%s-board", prefix);
    shmkit_board *b;
    shmkit_board_writer *w;
    CHECK(shmkit_board_create(name, 64, 0600, &b));
    CHECK(shmkit_board_writer_open(b, &w));
    uint64_t v;
    CHECK(shmkit_board_write(w, "sunny", 5, &v));
    CHECK(shmkit_board_wait(b, 0, 0));
    CHECK(shmkit_board_read(b, buf, sizeof buf, &len, &v));
    if (len != 5 || v != 1)
        return 11;
    CHECK(shmkit_board_fd(b, &fd));
    CHECK(shmkit_board_arm(b, v, &ready));
    CHECK(shmkit_board_write(w, "rain", 4, NULL));
    pf.fd = fd;
    if (ready || poll(&pf, 1, 5000) != 1)
        return 12;
    CHECK(shmkit_board_writer_close(w));
    CHECK(shmkit_board_unlink(b));
    CHECK(shmkit_board_close(b));

    /* Broadcast. */
    snprintf(name, sizeof name, "%s-news", prefix);
    shmkit_broadcast *bc;
    shmkit_publisher *pub;
    shmkit_subscriber *sub;
    CHECK(shmkit_broadcast_create(name, 4, 64, 0600, &bc));
    CHECK(shmkit_subscriber_open(bc, &sub));
    CHECK(shmkit_publisher_open(bc, &pub));
    for (int i = 0; i < 10; i++)
        CHECK(shmkit_publish(pub, "extra", 5, NULL));
    uint64_t missed;
    CHECK(shmkit_subscriber_recv(sub, buf, sizeof buf, &len, &missed, 0));
    if (missed == 0)
        return 13;
    CHECK(shmkit_subscriber_recv(sub, buf, sizeof buf, &len, &missed, 0));
    if (missed != 0 || len != 5)
        return 14;
    CHECK(shmkit_subscriber_fd(sub, &fd));
    CHECK(shmkit_publisher_close(pub));
    CHECK(shmkit_subscriber_close(sub));
    CHECK(shmkit_broadcast_unlink(bc));
    CHECK(shmkit_broadcast_close(bc));

    /* Object, map, mutex, semaphore. */
    snprintf(name, sizeof name, "%s-obj", prefix);
    shmkit_object *o;
    shmkit_map *m;
    CHECK(shmkit_object_open(name, SHMKIT_CREATE | SHMKIT_EXCL | SHMKIT_WRITE, 0600, 4096, &o));
    CHECK(shmkit_object_map(o, 1, &m));
    CHECK(shmkit_map_write(m, 1024, "greeting", 8));
    CHECK(shmkit_map_read(m, 1024, buf, 8));
    uint64_t size;
    CHECK(shmkit_object_size(o, &size));
    if (size != 4096 || memcmp(buf, "greeting", 8) != 0)
        return 15;
    shmkit_mutex *mu;
    shmkit_semaphore *se;
    int died;
    CHECK(shmkit_mutex_init(m, 0, &mu));
    CHECK(shmkit_mutex_lock(mu, -1, &died));
    CHECK(shmkit_mutex_unlock(mu));
    CHECK(shmkit_semaphore_init(m, 512, 1, &se));
    CHECK(shmkit_semaphore_wait(se, 0));
    if (shmkit_semaphore_wait(se, 0) != -EAGAIN)
        return 16;
    CHECK(shmkit_semaphore_post(se));
    CHECK(shmkit_mutex_close(mu));
    CHECK(shmkit_semaphore_close(se));
    CHECK(shmkit_map_close(m));
    CHECK(shmkit_object_unlink(o));
    CHECK(shmkit_object_close(o));
    printf("selftest ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: peer MODE NAME [N]\n");
        return 2;
    }
    const char *mode = argv[1], *name = argv[2];
    long n = argc > 3 ? atol(argv[3]) : 0;
    if (strcmp(mode, "send") == 0)
        return do_send(name, n);
    if (strcmp(mode, "stream") == 0)
        return do_stream(name);
    if (strcmp(mode, "recv") == 0)
        return do_recv(name, n, 0);
    if (strcmp(mode, "poll") == 0)
        return do_recv(name, n, 1);
    if (strcmp(mode, "quiet") == 0)
        return do_quiet(name, n);
    if (strcmp(mode, "errors") == 0)
        return do_errors(name);
    if (strcmp(mode, "selftest") == 0)
        return do_selftest(name);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
