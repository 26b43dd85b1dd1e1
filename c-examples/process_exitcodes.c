/*
 * process_exitcodes.c -- start children with the fork start method, read
 * their exit codes (returned, or minus the signal that killed them), and
 * check that bad input gets a specific error code.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/process_exitcodes.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L /* pipe, read, write, close, poll */

#include "multiproc.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* Entry: exits with the first byte of its argument. */
static int exit_with_first_byte(const uint8_t *arg, size_t arg_len) {
    return arg_len > 0 ? arg[0] : 0;
}

/* Entry: blocks reading one byte from the descriptor named by its argument
 * (an int), then exits with that byte. */
static int wait_at_fd(const uint8_t *arg, size_t arg_len) {
    int fd;
    unsigned char byte;
    if (arg_len != sizeof fd) {
        return 98;
    }
    memcpy(&fd, arg, sizeof fd);
    if (read(fd, &byte, 1) != 1) {
        return 99;
    }
    return byte;
}

static int start_waiting(int fd, mp_process_t **out) {
    return mp_process_start(MP_START_FORK, "wait_at_fd", (const uint8_t *)&fd, sizeof fd, out);
}

int main(int argc, char **argv) {
    CHECK(mp_register("exit_with_first_byte", exit_with_first_byte) == MP_OK);
    CHECK(mp_register("wait_at_fd", wait_at_fd) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);
    CHECK(mp_cpu_count() >= 1);

    /* Exit codes are what the entry returned; a second join gives the same. */
    for (int want = 0; want < 4; want++) {
        uint8_t arg = (uint8_t)want;
        mp_process_t *p = NULL;
        int code = -100;
        CHECK(mp_process_start(MP_START_FORK, "exit_with_first_byte", &arg, 1, &p) == MP_OK);
        CHECK(mp_process_pid(p) > 0);
        CHECK(mp_process_join(p, DEADLINE_NS, &code) == MP_OK);
        CHECK(code == want);
        code = -100;
        CHECK(mp_process_join(p, 0, &code) == MP_OK);
        CHECK(code == want);
        CHECK(mp_process_exitcode(p, &code) == MP_OK && code == want);
        CHECK(mp_process_is_alive(p) == 0);
        CHECK(mp_process_kill(p) == MP_OK); /* reaped: nothing is signalled */
        mp_process_free(p);
    }

    /* Children blocked at a gate (a pipe nobody writes yet): killed by
     * SIGKILL they exit with -9, by SIGTERM with -15. */
    int gate[2];
    CHECK(pipe(gate) == 0);
    for (int use_kill = 1; use_kill >= 0; use_kill--) {
        mp_process_t *p = NULL;
        int code = 0;
        CHECK(start_waiting(gate[0], &p) == MP_OK);
        CHECK(mp_process_join(p, 0, &code) == MP_ERR_TIMEOUT);
        CHECK(mp_process_exitcode(p, &code) == MP_ERR_STATE);
        CHECK(mp_process_is_alive(p) == 1);
        CHECK((use_kill ? mp_process_kill(p) : mp_process_terminate(p)) == MP_OK);
        CHECK(mp_process_join(p, DEADLINE_NS, &code) == MP_OK);
        CHECK(code == (use_kill ? -9 : -15));
        mp_process_free(p);
    }

    /* A child released through the gate: a short join times out, then the
     * sentinel (its pidfd) becomes readable and join gives its code. */
    {
        mp_process_t *p = NULL;
        int code = 0, sentinel = -1;
        CHECK(start_waiting(gate[0], &p) == MP_OK);
        CHECK(mp_process_join(p, 1000 * 1000, &code) == MP_ERR_TIMEOUT);
        CHECK(mp_process_sentinel(p, &sentinel) == MP_OK);
        CHECK(write(gate[1], "\x05", 1) == 1);
        struct pollfd pfd = {.fd = sentinel, .events = POLLIN};
        CHECK(poll(&pfd, 1, 30 * 1000) == 1);
        CHECK(mp_process_join(p, DEADLINE_NS, &code) == MP_OK);
        CHECK(code == 5);
        mp_process_free(p);
    }

    /* Bad input: a specific code, nothing started, *out untouched. */
    mp_process_t *untouched = NULL;
    CHECK(mp_process_start(42, "exit_with_first_byte", NULL, 0, &untouched) == MP_ERR_INVALID);
    CHECK(mp_process_start(MP_START_SPAWN, "no_such_entry", NULL, 0, &untouched) ==
          MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(MP_START_FORKSERVER, "no_such_entry", NULL, 0, &untouched) ==
          MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(MP_START_FORK, "no_such_entry", NULL, 0, &untouched) ==
          MP_ERR_NOT_FOUND);
    CHECK(mp_process_start(MP_START_FORK, NULL, NULL, 0, &untouched) == MP_ERR_NULL);
    CHECK(mp_process_start(MP_START_FORK, "exit_with_first_byte", NULL, 4, &untouched) ==
          MP_ERR_NULL);
    CHECK(mp_process_start(MP_START_FORK, "exit_with_first_byte", NULL, 0, NULL) == MP_ERR_NULL);
    CHECK(untouched == NULL);
    CHECK(mp_process_join(NULL, 0, NULL) == MP_ERR_NULL);
    CHECK(mp_process_pid(NULL) == MP_ERR_NULL);
    CHECK(mp_register("exit_with_first_byte", wait_at_fd) == MP_ERR_INVALID);
    CHECK(mp_register(NULL, wait_at_fd) == MP_ERR_NULL);
    mp_process_free(NULL);

    close(gate[0]);
    close(gate[1]);
    printf("process_exitcodes: ok\n");
    return 0;
}
