/*
 * start_methods.c -- the same worker started by all three start methods
 * (MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER), each given a shared
 * memfd segment by its handle text.
 *
 * The segment holds a counter that every worker increments ROUNDS times
 * with an atomic add (the shared object; the sync Lock will take its place
 * once it lands) and one slot per worker where it writes its pid. Each
 * worker exits with 10 + its method. The parent checks the counter, the
 * pids and the exit codes; then kills a worker of each method (exit code
 * -9) and checks that bad input gets specific errors.
 *
 * This program has its own main, which registers the entry and calls
 * mp_init first: a spawned child (a fresh run of this executable) runs the
 * worker from there and exits, and so does the fork server.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/start_methods.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 10000
#define DEADLINE_NS (30LL * 1000 * 1000 * 1000)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

/* The segment's layout: word 0 the counter, words 1..3 the workers' pids,
 * word 4 set by a worker that must wait until the parent kills it. */
struct shared {
    _Atomic uint64_t counter;
    _Atomic uint64_t pid[3];
    _Atomic uint64_t waiting;
};

/* Argument: one byte (the method), one byte (1: wait to be killed), then
 * the handle text. */
static int worker(const uint8_t *arg, size_t arg_len) {
    char handle[256];
    if (arg_len < 3 || arg_len - 2 >= sizeof handle || arg[0] > 2) {
        return 2;
    }
    memcpy(handle, arg + 2, arg_len - 2);
    handle[arg_len - 2] = '\0';
    mp_segment_t *seg = NULL;
    if (mp_segment_open(handle, &seg) != MP_OK) {
        fprintf(stderr, "worker: %s\n", mp_last_error());
        return 3;
    }
    struct shared *s = mp_segment_data(seg);
    if (arg[1]) {
        atomic_fetch_add(&s->waiting, 1);
        for (;;) {
            pause(); /* until SIGKILL */
        }
    }
    for (int i = 0; i < ROUNDS; i++) {
        atomic_fetch_add(&s->counter, 1);
    }
    atomic_store(&s->pid[arg[0]], (uint64_t)getpid());
    mp_segment_free(seg);
    return 10 + arg[0];
}

static const int methods[3] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
static const char *names[3] = {"fork", "spawn", "forkserver"};

static size_t make_arg(uint8_t *arg, int method, int wait, const char *handle) {
    size_t len = strlen(handle);
    arg[0] = (uint8_t)method;
    arg[1] = (uint8_t)wait;
    memcpy(arg + 2, handle, len);
    return len + 2;
}

int main(int argc, char **argv) {
    CHECK(mp_register("worker", worker) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    mp_segment_t *seg = NULL;
    CHECK(mp_segment_new(sizeof(struct shared), MP_BACKING_MEMFD, &seg) == MP_OK);
    struct shared *s = mp_segment_data(seg);
    char handle[256];
    CHECK(mp_segment_handle(seg, handle, sizeof handle) == MP_OK);

    /* The same worker, started by each method, all at once. */
    mp_process_t *p[3];
    uint8_t arg[300];
    for (int m = 0; m < 3; m++) {
        size_t len = make_arg(arg, m, 0, handle);
        CHECK(mp_process_start(methods[m], "worker", arg, len, &p[m]) == MP_OK);
    }
    for (int m = 0; m < 3; m++) {
        int code = -1;
        CHECK(mp_process_join(p[m], DEADLINE_NS, &code) == MP_OK);
        if (code != 10 + m) {
            fprintf(stderr, "%s worker exited with %d\n", names[m], code);
            return 1;
        }
        CHECK(atomic_load(&s->pid[m]) == (uint64_t)mp_process_pid(p[m]));
        CHECK(mp_process_is_alive(p[m]) == 0);
        mp_process_free(p[m]);
    }
    CHECK(atomic_load(&s->counter) == 3 * ROUNDS);

    /* Killed by a signal: -9, whatever the method. */
    for (int m = 0; m < 3; m++) {
        size_t len = make_arg(arg, m, 1, handle);
        uint64_t before = atomic_load(&s->waiting);
        CHECK(mp_process_start(methods[m], "worker", arg, len, &p[m]) == MP_OK);
        int code = 0;
        /* Wait (with the deadline) until it is inside the worker. */
        for (int tries = 0; atomic_load(&s->waiting) == before; tries++) {
            CHECK(mp_process_join(p[m], 1000000, &code) == MP_ERR_TIMEOUT);
            CHECK(tries < 30000);
        }
        CHECK(mp_process_is_alive(p[m]) == 1);
        CHECK(mp_process_kill(p[m]) == MP_OK);
        CHECK(mp_process_join(p[m], DEADLINE_NS, &code) == MP_OK);
        CHECK(code == -9);
        mp_process_free(p[m]);
    }

    /* Bad input: specific errors, nothing started, *out untouched. */
    mp_process_t *untouched = NULL;
    CHECK(mp_process_start(MP_START_SPAWN, "no-such-entry", NULL, 0, &untouched)
          == MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(MP_START_FORKSERVER, "no-such-entry", NULL, 0, &untouched)
          == MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(3, "worker", NULL, 0, &untouched) == MP_ERR_INVALID);
    CHECK(untouched == NULL);

    mp_segment_free(seg);
    printf("start_methods: fork, spawn and forkserver workers counted to %d, "
           "exit codes and kills as expected\n", 3 * ROUNDS);
    return 0;
}
