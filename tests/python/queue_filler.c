/*
 * queue_filler.c -- the producer of tests/python/test_queue.py: a C process
 * that knows a queue only by its handle text (and holds the memfd the
 * handle names at the same descriptor number, passed down by the script).
 *
 * Usage: queue_filler HANDLE COUNT
 * Puts COUNT messages "message 0" .. "message COUNT-1" in order, checks that
 * a message over the queue's maximum is refused with MP_ERR_TOO_LARGE, puts
 * one message of 40 'y' bytes, closes the queue and exits 0. Any failure
 * exits 1 with the reason on stderr.
 *
 * Built by tests/python_ctypes.rs (gcc -std=c11 -Wall -Wextra -Werror,
 * linked with the cdylib that test built) before the script runs.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEADLINE_NS (30LL * 1000 * 1000 * 1000)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HANDLE COUNT\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[2], NULL, 10);
    CHECK(count >= 0);

    mp_queue_t *q = NULL;
    CHECK(mp_queue_open(argv[1], &q) == MP_OK);
    size_t max = mp_queue_max_msg_size(q);
    CHECK(max >= 40 && max < 4096);

    char msg[64];
    for (long i = 0; i < count; i++) {
        int len = snprintf(msg, sizeof msg, "message %ld", i);
        CHECK(len > 0 && (size_t)len <= max);
        CHECK(mp_queue_put(q, msg, (size_t)len, DEADLINE_NS) == MP_OK);
    }

    char big[4096];
    memset(big, 'x', sizeof big);
    CHECK(mp_queue_put(q, big, max + 1, 0) == MP_ERR_TOO_LARGE);

    char last[40];
    memset(last, 'y', sizeof last);
    CHECK(mp_queue_put(q, last, sizeof last, DEADLINE_NS) == MP_OK);
    CHECK(mp_queue_close(q) == MP_OK);
    mp_queue_free(q);
    printf("queue_filler: put %ld messages and one of 40 bytes, closed the queue\n", count);
    return 0;
}
