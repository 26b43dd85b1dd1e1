/*
 * queue_mpmc.c -- N producer and M consumer processes over one queue, each
 * message numbered; the parent checks every message arrived exactly once.
 * Then the errors bad input gets.
 *
 * The parent makes an MPMC queue and a shared block of one counter byte per
 * message, and starts the children with the fork start method: they
 * inherit both. Producer p puts the numbers p*PER .. p*PER+PER-1 (8 bytes
 * each, then p+1 filler bytes). Consumers take messages until the queue is
 * closed and drained, and count each number. The parent joins the
 * producers, closes the queue, joins the consumers and checks the counts.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/queue_mpmc.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PRODUCERS 3
#define CONSUMERS 2
#define PER 20000
#define MAX_MSG 16
#define DEADLINE_NS (60LL * 1000 * 1000 * 1000)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

/* Inherited by the fork children as they are. */
static mp_queue_t *queue;
static mp_segment_t *counts;

static int produce(const uint8_t *arg, size_t arg_len) {
    if (arg_len != 1) {
        return 10;
    }
    uint64_t p = arg[0];
    uint8_t msg[MAX_MSG];
    for (uint64_t i = 0; i < PER; i++) {
        uint64_t id = p * PER + i;
        memcpy(msg, &id, 8);
        memset(msg + 8, (int)p, (size_t)p + 1);
        if (mp_queue_put(queue, msg, 8 + (size_t)p + 1, DEADLINE_NS) != MP_OK) {
            fprintf(stderr, "put: %s\n", mp_last_error());
            return 11;
        }
    }
    return 0;
}

static int consume(const uint8_t *arg, size_t arg_len) {
    (void)arg;
    (void)arg_len;
    uint8_t *seen = mp_segment_data(counts);
    uint8_t msg[MAX_MSG];
    for (;;) {
        size_t len = 0;
        int rc = mp_queue_get(queue, msg, sizeof msg, &len, DEADLINE_NS);
        if (rc == MP_ERR_CLOSED) {
            return 0;
        }
        if (rc != MP_OK || len < 9) {
            fprintf(stderr, "get: %d %s\n", rc, mp_last_error());
            return 12;
        }
        uint64_t id;
        memcpy(&id, msg, 8);
        uint64_t p = id / PER;
        if (id >= PRODUCERS * PER || len != 8 + p + 1 || msg[8] != p) {
            return 13;
        }
        __atomic_fetch_add(&seen[id], 1, __ATOMIC_RELAXED);
    }
}

static int check_bad_input(void) {
    mp_queue_t *q = NULL;
    char handle[300];
    uint8_t buf[8];
    size_t len = 0;

    CHECK(mp_queue_new(0, 8, 0, &q) == MP_ERR_INVALID);
    CHECK(mp_queue_new(8, 0, 0, &q) == MP_ERR_INVALID);
    CHECK(mp_queue_new(8, 8, 0x80, &q) == MP_ERR_INVALID);
    CHECK(mp_queue_new((size_t)1 << 40, (size_t)1 << 30, 0, &q) == MP_ERR_TOO_LARGE);
    CHECK(mp_queue_new(8, 8, 0, NULL) == MP_ERR_NULL);
    CHECK(mp_queue_put(NULL, "x", 1, 0) == MP_ERR_NULL);
    CHECK(mp_queue_open(NULL, &q) == MP_ERR_NULL);
    CHECK(mp_queue_open("garbage", &q) == MP_ERR_INVALID);

    CHECK(mp_queue_new(2, 8, 0, &q) == MP_OK);
    CHECK(mp_queue_put(q, "123456789", 9, 0) == MP_ERR_TOO_LARGE);
    CHECK(mp_queue_put(q, NULL, 3, 0) == MP_ERR_NULL);
    CHECK(mp_queue_put(q, "abcdef", 6, 0) == MP_OK);
    CHECK(mp_queue_put(q, "g", 1, 0) == MP_OK);
    CHECK(mp_queue_put(q, "h", 1, 0) == MP_ERR_FULL);
    CHECK(mp_queue_put(q, "h", 1, -5) == MP_ERR_INVALID);
    /* Too small a buffer: the needed size comes back, the message stays. */
    CHECK(mp_queue_get(q, buf, 2, &len, 0) == MP_ERR_TOO_LARGE);
    CHECK(len == 6);
    CHECK(mp_queue_qsize(q) == 2);
    CHECK(mp_queue_get(q, buf, sizeof buf, NULL, 0) == MP_ERR_NULL);
    CHECK(mp_queue_get(q, buf, sizeof buf, &len, 0) == MP_OK);
    CHECK(len == 6 && memcmp(buf, "abcdef", 6) == 0);
    CHECK(mp_queue_task_done(q) == MP_ERR_STATE);
    CHECK(mp_queue_close(q) == MP_OK);
    CHECK(mp_queue_put(q, "i", 1, 0) == MP_ERR_CLOSED);
    CHECK(mp_queue_get(q, buf, sizeof buf, &len, 0) == MP_OK);
    CHECK(mp_queue_get(q, buf, sizeof buf, &len, 0) == MP_ERR_CLOSED);
    mp_queue_free(q);

    /* Joinable: task_done too often is a value error. */
    CHECK(mp_queue_new(2, 8, MP_QUEUE_JOINABLE, &q) == MP_OK);
    CHECK(mp_queue_put(q, "j", 1, 0) == MP_OK);
    CHECK(mp_queue_join(q, 1000) == MP_ERR_TIMEOUT);
    CHECK(mp_queue_get(q, buf, sizeof buf, &len, 0) == MP_OK);
    CHECK(mp_queue_task_done(q) == MP_OK);
    CHECK(mp_queue_task_done(q) == MP_ERR_VALUE);
    CHECK(mp_queue_join(q, 0) == MP_OK);
    mp_queue_free(q);

    /* A segment's handle is not a queue's. */
    CHECK(mp_segment_handle(counts, handle, sizeof handle) == MP_OK);
    CHECK(mp_queue_open(handle, &q) == MP_ERR_KIND);
    /* A queue's handle opens the same queue. */
    CHECK(mp_queue_handle(queue, handle, 4) == MP_ERR_TOO_LARGE);
    CHECK(mp_queue_handle(queue, handle, sizeof handle) == MP_OK);
    CHECK(mp_queue_open(handle, &q) == MP_OK);
    CHECK(mp_queue_max_msg_size(q) == MAX_MSG);
    mp_queue_free(q);

    /* A segment is not a queue object either. */
    CHECK(mp_queue_qsize(NULL) == 0);
    CHECK(mp_queue_close((mp_queue_t *)counts) == MP_ERR_INVALID);
    mp_queue_free(NULL);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(mp_register("produce", produce) == MP_OK);
    CHECK(mp_register("consume", consume) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    CHECK(mp_queue_new(64, MAX_MSG, 0, &queue) == MP_OK);
    CHECK(mp_segment_new(PRODUCERS * PER, MP_BACKING_MEMFD, &counts) == MP_OK);

    mp_process_t *producers[PRODUCERS];
    mp_process_t *consumers[CONSUMERS];
    for (int c = 0; c < CONSUMERS; c++) {
        CHECK(mp_process_start(MP_START_FORK, "consume", NULL, 0, &consumers[c]) == MP_OK);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        uint8_t arg = (uint8_t)p;
        CHECK(mp_process_start(MP_START_FORK, "produce", &arg, 1, &producers[p]) == MP_OK);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        int code = -1;
        CHECK(mp_process_join(producers[p], DEADLINE_NS, &code) == MP_OK);
        CHECK(code == 0);
        mp_process_free(producers[p]);
    }
    CHECK(mp_queue_close(queue) == MP_OK);
    for (int c = 0; c < CONSUMERS; c++) {
        int code = -1;
        CHECK(mp_process_join(consumers[c], DEADLINE_NS, &code) == MP_OK);
        CHECK(code == 0);
        mp_process_free(consumers[c]);
    }

    const uint8_t *seen = mp_segment_data(counts);
    for (size_t id = 0; id < PRODUCERS * PER; id++) {
        if (seen[id] != 1) {
            fprintf(stderr, "message %zu arrived %d times\n", id, seen[id]);
            return 1;
        }
    }
    if (check_bad_input() != 0) {
        return 1;
    }
    mp_queue_free(queue);
    mp_segment_free(counts);
    printf("queue_mpmc: %d messages from %d producers to %d consumers, each exactly once\n",
           PRODUCERS * PER, PRODUCERS, CONSUMERS);
    return 0;
}
