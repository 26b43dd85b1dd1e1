/*
 * deposit_withdraw.c -- four fork children share a balance guarded by a
 * robust process-shared lock: two deposit 1 a hundred thousand times, two
 * withdraw 1 as often. Without the lock, updates get lost; with it, the
 * balance ends exactly where it started. Also checks that a process that
 * does not hold the lock cannot release it.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/deposit_withdraw.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdio.h>
#include <string.h>

#define ROUNDS 100000
#define START_BALANCE 1000L
/* Longer than anything here takes: reaching it means a bug, not a slow machine. */
#define DEADLINE_NS (30LL * 1000 * 1000 * 1000)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

/* Set up by main before any child starts; fork children inherit them. */
static mp_lock_t *lock;
static long *balance; /* in a shared segment */

/* Entry: adds its argument (an int, +1 or -1) to the balance ROUNDS times,
 * each time under the lock. */
static int change_balance(const uint8_t *arg, size_t arg_len) {
    int delta;
    if (arg_len != sizeof delta) {
        return 98;
    }
    memcpy(&delta, arg, sizeof delta);
    for (int i = 0; i < ROUNDS; i++) {
        if (mp_lock_acquire(lock, DEADLINE_NS) != MP_OK) {
            return 97;
        }
        *balance += delta;
        if (mp_lock_release(lock) != MP_OK) {
            return 96;
        }
    }
    return 0;
}

/* Entry: tries to release the lock the parent holds. */
static int release_foreign(const uint8_t *arg, size_t arg_len) {
    (void)arg;
    (void)arg_len;
    return mp_lock_release(lock) == MP_ERR_NOT_OWNER ? 0 : 1;
}

int main(int argc, char **argv) {
    CHECK(mp_register("change_balance", change_balance) == MP_OK);
    CHECK(mp_register("release_foreign", release_foreign) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    mp_segment_t *seg = NULL;
    CHECK(mp_lock_new(&lock) == MP_OK);
    CHECK(mp_segment_new(sizeof *balance, MP_BACKING_ANONYMOUS, &seg) == MP_OK);
    balance = mp_segment_data(seg);
    CHECK(balance != NULL);
    *balance = START_BALANCE;

    const int deltas[4] = {+1, +1, -1, -1};
    mp_process_t *children[4] = {NULL};
    for (int i = 0; i < 4; i++) {
        CHECK(mp_process_start(MP_START_FORK, "change_balance", (const uint8_t *)&deltas[i],
                               sizeof deltas[i], &children[i]) == MP_OK);
    }
    for (int i = 0; i < 4; i++) {
        int code = -100;
        CHECK(mp_process_join(children[i], DEADLINE_NS, &code) == MP_OK);
        CHECK(code == 0);
        mp_process_free(children[i]);
    }
    printf("balance after 4 x %d locked updates: %ld (started at %ld)\n", ROUNDS, *balance,
           START_BALANCE);
    CHECK(*balance == START_BALANCE);

    /* Only the holder may release: not another process, not a non-holder. */
    CHECK(mp_lock_release(lock) == MP_ERR_NOT_OWNER);
    CHECK(mp_lock_acquire(lock, 0) == MP_OK);
    mp_process_t *other = NULL;
    int code = -100;
    CHECK(mp_process_start(MP_START_FORK, "release_foreign", NULL, 0, &other) == MP_OK);
    CHECK(mp_process_join(other, DEADLINE_NS, &code) == MP_OK);
    CHECK(code == 0);
    mp_process_free(other);
    CHECK(mp_lock_is_locked(lock) == 1);
    CHECK(mp_lock_release(lock) == MP_OK);

    /* Bad input gets a specific error. */
    CHECK(mp_lock_acquire(NULL, 0) == MP_ERR_NULL);
    CHECK(mp_lock_acquire(lock, -5) == MP_ERR_INVALID);

    mp_segment_free(seg);
    mp_lock_free(lock);
    return 0;
}
