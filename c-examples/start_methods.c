/*
 * start_methods.c -- the same worker started by all three start methods
 * (MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER), each given a lock
 * and a shared memfd segment by their handle texts.
 *
 * The segment holds a plain counter that every worker increments ROUNDS
 * times under the lock (a read and a write: without the lock, updates would
 * be lost) and one slot per worker where it writes its pid. Each worker
 * exits with 10 + its method. Each is started under a name of its own and
 * checks, in the child, that it has that name and that its parent is the
 * process that started it (for forkserver workers that is not the process
 * that forked them). The parent checks the counter, the pids and the exit
 * codes; then, while a worker of each method waits, that all three are
 * among its active children, kills them (exit code -9), sees them gone
 * from the active children, and checks that bad input gets specific
 * errors.
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
 * word 4 set by a worker that must wait until the parent kills it, word 5
 * the parent's pid. */
struct shared {
    uint64_t counter; /* only under the lock */
    _Atomic uint64_t pid[3];
    _Atomic uint64_t waiting;
    uint64_t parent;
};

static const char *names[3] = {"fork", "spawn", "forkserver"};

/* Argument: one byte (the method), one byte (1: wait to be killed), then
 * "LOCK HANDLE\nSEGMENT HANDLE". */
static int worker(const uint8_t *arg, size_t arg_len) {
    char text[600];
    if (arg_len < 3 || arg_len - 2 >= sizeof text || arg[0] > 2) {
        return 2;
    }
    memcpy(text, arg + 2, arg_len - 2);
    text[arg_len - 2] = '\0';
    char *newline = strchr(text, '\n');
    if (newline == NULL) {
        return 2;
    }
    *newline = '\0';
    mp_lock_t *lock = NULL;
    mp_segment_t *seg = NULL;
    if (mp_lock_open(text, &lock) != MP_OK || mp_segment_open(newline + 1, &seg) != MP_OK) {
        fprintf(stderr, "worker: %s\n", mp_last_error());
        return 3;
    }
    struct shared *s = mp_segment_data(seg);
    /* Who this child is: the name it was started under, and its parent. */
    char name[64], want[64];
    snprintf(want, sizeof want, "worker-%s", names[arg[0]]);
    if (mp_current_process_name(name, sizeof name) != MP_OK || strcmp(name, want) != 0) {
        fprintf(stderr, "worker: named '%s', expected '%s'\n", name, want);
        return 6;
    }
    if ((uint64_t)mp_parent_pid() != s->parent) {
        fprintf(stderr, "worker: parent %d, expected %llu\n", mp_parent_pid(),
                (unsigned long long)s->parent);
        return 7;
    }
    if (arg[1]) {
        atomic_fetch_add(&s->waiting, 1);
        for (;;) {
            pause(); /* until SIGKILL */
        }
    }
    for (int i = 0; i < ROUNDS; i++) {
        if (mp_lock_acquire(lock, DEADLINE_NS) != MP_OK) {
            return 4;
        }
        uint64_t seen = s->counter;
        s->counter = seen + 1;
        if (mp_lock_release(lock) != MP_OK) {
            return 5;
        }
    }
    atomic_store(&s->pid[arg[0]], (uint64_t)getpid());
    mp_segment_free(seg);
    mp_lock_free(lock);
    return 10 + arg[0];
}

static const int methods[3] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};

/* Starts the worker by method `m` under the name "worker-METHOD". */
static int start_worker(int m, const uint8_t *arg, size_t len, mp_process_t **out) {
    char name[64];
    snprintf(name, sizeof name, "worker-%s", names[m]);
    return mp_process_start_named(methods[m], "worker", arg, len, name, out);
}

static size_t make_arg(uint8_t *arg, int method, int wait, const char *lock, const char *seg) {
    int len = snprintf((char *)arg + 2, 560, "%s\n%s", lock, seg);
    arg[0] = (uint8_t)method;
    arg[1] = (uint8_t)wait;
    return (size_t)len + 2;
}

int main(int argc, char **argv) {
    CHECK(mp_register("worker", worker) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    mp_segment_t *seg = NULL;
    CHECK(mp_segment_new(sizeof(struct shared), MP_BACKING_MEMFD, &seg) == MP_OK);
    struct shared *s = mp_segment_data(seg);
    s->parent = (uint64_t)getpid();
    char handle[256];
    CHECK(mp_segment_handle(seg, handle, sizeof handle) == MP_OK);
    mp_lock_t *lock = NULL;
    CHECK(mp_lock_new(&lock) == MP_OK);
    char lock_handle[256];
    CHECK(mp_lock_handle(lock, lock_handle, sizeof lock_handle) == MP_OK);

    /* The same worker, started by each method, all at once. */
    mp_process_t *p[3];
    uint8_t arg[600];
    for (int m = 0; m < 3; m++) {
        size_t len = make_arg(arg, m, 0, lock_handle, handle);
        CHECK(start_worker(m, arg, len, &p[m]) == MP_OK);
        char name[64];
        CHECK(mp_process_name(p[m], name, sizeof name) == MP_OK);
        CHECK(strncmp(name, "worker-", 7) == 0 && strcmp(name + 7, names[m]) == 0);
        CHECK(mp_process_name(p[m], name, 7) == MP_ERR_TOO_LARGE);
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
    CHECK(mp_lock_acquire(lock, DEADLINE_NS) == MP_OK);
    CHECK(s->counter == 3 * ROUNDS);
    CHECK(mp_lock_release(lock) == MP_OK);

    /* Killed by a signal: -9, whatever the method. All three wait at once,
     * so all three are among the active children until killed. */
    for (int m = 0; m < 3; m++) {
        size_t len = make_arg(arg, m, 1, lock_handle, handle);
        uint64_t before = atomic_load(&s->waiting);
        CHECK(start_worker(m, arg, len, &p[m]) == MP_OK);
        int code = 0;
        /* Wait (with the deadline) until it is inside the worker. */
        for (int tries = 0; atomic_load(&s->waiting) == before; tries++) {
            CHECK(mp_process_join(p[m], 1000000, &code) == MP_ERR_TIMEOUT);
            CHECK(tries < 30000);
        }
        CHECK(mp_process_is_alive(p[m]) == 1);
    }
    {
        int pids[3] = {0, 0, 0};
        size_t count = 0;
        CHECK(mp_active_children(NULL, 0, &count) == MP_ERR_TOO_LARGE && count == 3);
        CHECK(mp_active_children(pids, 2, &count) == MP_ERR_TOO_LARGE && count == 3);
        CHECK(mp_active_children(pids, 3, &count) == MP_OK && count == 3);
        for (int m = 0; m < 3; m++) {
            int found = 0;
            for (int i = 0; i < 3; i++) {
                found += pids[i] == mp_process_pid(p[m]);
            }
            CHECK(found == 1);
        }
        CHECK(mp_active_children(pids, 3, NULL) == MP_ERR_NULL);
    }
    for (int m = 0; m < 3; m++) {
        int code = 0;
        CHECK(mp_process_kill(p[m]) == MP_OK);
        CHECK(mp_process_join(p[m], DEADLINE_NS, &code) == MP_OK);
        CHECK(code == -9);
        mp_process_free(p[m]);
    }
    {
        size_t count = 99;
        CHECK(mp_active_children(NULL, 0, &count) == MP_OK && count == 0);
    }
    {
        char name[64];
        CHECK(mp_current_process_name(name, sizeof name) == MP_OK);
        CHECK(strcmp(name, "MainProcess") == 0);
        CHECK(mp_current_process_name(NULL, sizeof name) == MP_ERR_NULL);
        CHECK(mp_parent_pid() == 0);
    }

    /* Bad input: specific errors, nothing started, *out untouched. */
    mp_process_t *untouched = NULL;
    CHECK(mp_process_start(MP_START_SPAWN, "no-such-entry", NULL, 0, &untouched)
          == MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(MP_START_FORKSERVER, "no-such-entry", NULL, 0, &untouched)
          == MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(3, "worker", NULL, 0, &untouched) == MP_ERR_INVALID);
    CHECK(mp_process_start_named(MP_START_FORK, "worker", NULL, 0, "bad \xff name", &untouched)
          == MP_ERR_INVALID);
    CHECK(untouched == NULL);
    CHECK(mp_process_name(NULL, handle, sizeof handle) == MP_ERR_NULL);

    mp_lock_free(lock);
    mp_segment_free(seg);
    printf("start_methods: fork, spawn and forkserver workers counted to %d under one lock, "
           "exit codes and kills as expected\n", 3 * ROUNDS);
    return 0;
}
