/*
 * pool_squares.c -- the classic pool example: squares of 0..N-1 computed by
 * a pool of worker processes, started by fork and by spawn.
 *
 * `square` is registered with mp_pool_register before mp_init, so that a
 * spawned worker (a fresh run of this executable) finds it by name. Each
 * input is an int64_t, each result too. Then `square_or_die` SIGKILLs its
 * own worker on input 13: that input alone fails with MP_ERR_OWNER_DIED
 * (the worker was lost), every other input succeeds, and the pool goes on
 * with a replacement worker. Last, bad input gets specific errors.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/pool_squares.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N 1000
#define KILLED_INPUT 13

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

static int square(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                  size_t *out_len) {
    int64_t x;
    if (in_len != sizeof x || out_cap < sizeof x) {
        return 1;
    }
    memcpy(&x, in, sizeof x);
    x *= x;
    memcpy(out, &x, sizeof x);
    *out_len = sizeof x;
    return 0;
}

static int square_or_die(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                         size_t *out_len) {
    int64_t x;
    if (in_len == sizeof x) {
        memcpy(&x, in, sizeof x);
        if (x == KILLED_INPUT) {
            kill(getpid(), SIGKILL);
        }
    }
    return square(in, in_len, out, out_cap, out_len);
}

/* Maps `fn` over 0..N-1 with `pool`; checks every square, except that
 * input `lost` (if >= 0) must have failed with MP_ERR_OWNER_DIED. */
static int check_squares(mp_pool_t *pool, const char *fn, size_t chunksize, int64_t lost) {
    static int64_t values[N];
    static const uint8_t *inputs[N];
    static size_t lens[N];
    for (int64_t i = 0; i < N; i++) {
        values[i] = i;
        inputs[i] = (const uint8_t *)&values[i];
        lens[i] = sizeof values[i];
    }
    mp_pool_results_t *results = NULL;
    CHECK(mp_pool_map(pool, fn, inputs, lens, N, chunksize, &results) == MP_OK);
    CHECK(mp_pool_results_len(results) == N);
    for (int64_t i = 0; i < N; i++) {
        int64_t got = -1;
        size_t len = 0;
        int rc = mp_pool_results_get(results, (size_t)i, (uint8_t *)&got, sizeof got, &len);
        if (i == lost) {
            CHECK(rc == MP_ERR_OWNER_DIED);
        } else {
            CHECK(rc == MP_OK);
            CHECK(len == sizeof got);
            CHECK(got == i * i);
        }
    }
    mp_pool_results_free(results);
    return 0;
}

static int run(int method, const char *name) {
    mp_pool_t *pool = NULL;
    CHECK(mp_pool_new(2, method, &pool) == MP_OK);

    CHECK(check_squares(pool, "square", MP_POOL_CHUNKSIZE_AUTO, -1) == 0);
    CHECK(check_squares(pool, "square", 1, -1) == 0);

    /* One input kills its worker: only that input fails. */
    CHECK(check_squares(pool, "square_or_die", 1, KILLED_INPUT) == 0);
    /* The pool goes on with a replacement worker. */
    int64_t seven = 7, got = 0;
    size_t len = 0;
    CHECK(mp_pool_apply(pool, "square", (const uint8_t *)&seven, sizeof seven,
                        (uint8_t *)&got, sizeof got, &len) == MP_OK);
    CHECK(len == sizeof got && got == 49);

    /* A buffer too small: MP_ERR_TOO_LARGE, and the length needed. */
    uint8_t small[2];
    CHECK(mp_pool_apply(pool, "square", (const uint8_t *)&seven, sizeof seven, small,
                        sizeof small, &len) == MP_ERR_TOO_LARGE);
    CHECK(len == sizeof got);

    /* Bad input: specific errors. */
    mp_pool_results_t *results = NULL;
    const uint8_t *one[1] = {(const uint8_t *)&seven};
    size_t one_len[1] = {sizeof seven};
    CHECK(mp_pool_map(pool, "square", one, one_len, 1, 0, &results) == MP_ERR_INVALID);
    CHECK(mp_pool_map(pool, "no_such_function", one, one_len, 1, 1, &results) ==
          MP_ERR_NOT_FOUND);
    CHECK(results == NULL);

    CHECK(mp_pool_close(pool) == MP_OK);
    CHECK(mp_pool_map(pool, "square", one, one_len, 1, 1, &results) == MP_ERR_CLOSED);
    CHECK(mp_pool_join(pool) == MP_OK);
    mp_pool_free(pool);
    printf("%s: squares of 0..%d ok, input %d lost with its worker, pool went on\n", name, N - 1,
           KILLED_INPUT);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(mp_pool_register("square", square) == MP_OK);
    CHECK(mp_pool_register("square_or_die", square_or_die) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    mp_pool_t *pool = NULL;
    CHECK(mp_pool_new(0, MP_START_FORK, &pool) == MP_ERR_INVALID);
    CHECK(mp_pool_new(2, 7, &pool) == MP_ERR_INVALID);
    CHECK(pool == NULL);

    CHECK(run(MP_START_FORK, "fork") == 0);
    CHECK(run(MP_START_SPAWN, "spawn") == 0);
    return 0;
}
