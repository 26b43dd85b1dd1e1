/*
 * segment_fork.c -- a shared segment filled by fork children, found by its
 * handle text, checked by the parent; and the errors bad input gets.
 *
 * The parent makes a memfd-backed block of N 64-bit words and starts two
 * children with the fork start method. Each child is given the block's
 * handle text as its argument, attaches with mp_segment_open, and writes
 * its half of the words (word i = i*i + 1). The parent joins them and
 * checks every word.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/segment_fork.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define WORDS 4096
#define DEADLINE_NS (30LL * 1000 * 1000 * 1000)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

/* The argument: one byte (which half: 0 or 1), then the handle text. */
static int fill_half(const uint8_t *arg, size_t arg_len) {
    char handle[256];
    if (arg_len < 2 || arg_len - 1 >= sizeof handle) {
        return 10;
    }
    int half = arg[0];
    memcpy(handle, arg + 1, arg_len - 1);
    handle[arg_len - 1] = '\0';

    mp_segment_t *seg = NULL;
    if (mp_segment_open(handle, &seg) != MP_OK) {
        return 11;
    }
    if (mp_segment_len(seg) != WORDS * sizeof(uint64_t)) {
        return 12;
    }
    uint64_t *words = mp_segment_data(seg);
    for (size_t i = (size_t)half; i < WORDS; i += 2) {
        words[i] = (uint64_t)i * i + 1;
    }
    mp_segment_free(seg);
    return 0;
}

static int check_bad_input(const char *good_handle) {
    mp_segment_t *seg = NULL;
    char buf[256];

    CHECK(mp_segment_new(0, MP_BACKING_MEMFD, &seg) == MP_ERR_INVALID);
    CHECK(mp_segment_new(64, 7, &seg) == MP_ERR_INVALID);
    CHECK(mp_segment_new(64, MP_BACKING_MEMFD, NULL) == MP_ERR_NULL);
    CHECK(mp_segment_open(NULL, &seg) == MP_ERR_NULL);
    CHECK(mp_segment_open("garbage", &seg) == MP_ERR_INVALID);
    CHECK(strstr(mp_last_error(), "garbage") != NULL);
    CHECK(mp_segment_open("mp1:shm:mp-1-1-0123456789abcdef:0123456789abcdef:64:bytes", &seg)
          == MP_ERR_NOT_FOUND);

    /* The same handle, but claiming to be a lock: wrong kind. */
    snprintf(buf, sizeof buf, "%s", good_handle);
    char *kind = strstr(buf, ":bytes");
    CHECK(kind != NULL);
    strcpy(kind, ":lock");
    CHECK(mp_segment_open(buf, &seg) == MP_ERR_KIND);

    /* The same handle with an offset far outside the segment. */
    char *last = strrchr(good_handle, ':');
    char *offset_colon = NULL;
    for (char *p = (char *)good_handle; p < last; p++) {
        if (*p == ':') {
            offset_colon = p;
        }
    }
    CHECK(offset_colon != NULL);
    snprintf(buf, sizeof buf, "%.*s:1099511627776%s", (int)(offset_colon - good_handle),
             good_handle, last);
    CHECK(mp_segment_open(buf, &seg) == MP_ERR_INVALID);

    /* Queries on NULL: a clear error, no crash. */
    CHECK(mp_segment_data(NULL) == NULL);
    CHECK(mp_segment_len(NULL) == 0);
    CHECK(mp_segment_handle(NULL, buf, sizeof buf) == MP_ERR_NULL);
    mp_segment_free(NULL);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(mp_register("fill_half", fill_half) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    mp_segment_t *seg = NULL;
    CHECK(mp_segment_new(WORDS * sizeof(uint64_t), MP_BACKING_MEMFD, &seg) == MP_OK);
    char handle[256];
    CHECK(mp_segment_handle(seg, handle, 4) == MP_ERR_TOO_LARGE);
    CHECK(mp_segment_handle(seg, handle, sizeof handle) == MP_OK);

    mp_process_t *children[2];
    for (int half = 0; half < 2; half++) {
        uint8_t arg[257];
        size_t len = strlen(handle);
        arg[0] = (uint8_t)half;
        memcpy(arg + 1, handle, len);
        CHECK(mp_process_start(MP_START_FORK, "fill_half", arg, len + 1, &children[half]) == MP_OK);
    }
    for (int half = 0; half < 2; half++) {
        int code = -1;
        CHECK(mp_process_join(children[half], DEADLINE_NS, &code) == MP_OK);
        CHECK(code == 0);
        mp_process_free(children[half]);
    }

    const uint64_t *words = mp_segment_data(seg);
    for (size_t i = 0; i < WORDS; i++) {
        if (words[i] != (uint64_t)i * i + 1) {
            fprintf(stderr, "word %zu is %llu\n", i, (unsigned long long)words[i]);
            return 1;
        }
    }
    if (check_bad_input(handle) != 0) {
        return 1;
    }
    mp_segment_free(seg);
    printf("segment_fork: %d words written by 2 fork children, all correct\n", WORDS);
    return 0;
}
