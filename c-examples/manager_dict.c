/*
 * manager_dict.c -- several forked children update one dict and one list
 * through a manager's server; the parent checks the exact final content.
 * Then the errors bad input gets, a call after shutdown, and a manager whose
 * server was started by spawn.
 *
 * The parent starts the manager (its server is a fork child), makes a dict
 * and a list, and forks CHILDREN children: they inherit the proxies (each
 * child's first call opens its own connection to the server). Child c sets
 * "c<c>-<i>" = "<i>" and appends "c<c>:<i>" for i in 0..PER-1, then exits.
 * The parent waits for them and checks every key, every value, and that
 * the list holds each item exactly once, in each child's order.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/manager_dict.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILDREN 4
#define PER 100

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

/* What child c does; returns its exit code. */
static int child(mp_dict_t *d, mp_list_t *l, int c) {
    char key[32], value[32];
    for (int i = 0; i < PER; i++) {
        int klen = snprintf(key, sizeof key, "c%d-%d", c, i);
        int vlen = snprintf(value, sizeof value, "%d", i);
        CHECK(mp_dict_set(d, key, (size_t)klen, value, (size_t)vlen) == MP_OK);
        int ilen = snprintf(value, sizeof value, "c%d:%d", c, i);
        CHECK(mp_list_append(l, value, (size_t)ilen) == MP_OK);
    }
    return 0;
}

int main(int argc, char **argv) {
    CHECK(mp_init(argc, argv) == MP_OK);
    mp_manager_t *m = NULL;
    CHECK(mp_manager_start(MP_START_FORK, &m) == MP_OK);
    char address[256];
    CHECK(mp_manager_address(m, address, sizeof address) == MP_OK);
    CHECK(strncmp(address, "unix:", 5) == 0);
    mp_dict_t *d = NULL;
    mp_list_t *l = NULL;
    CHECK(mp_manager_dict(m, &d) == MP_OK);
    CHECK(mp_manager_list(m, &l) == MP_OK);

    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        CHECK(pids[c] >= 0);
        if (pids[c] == 0) {
            _exit(child(d, l, c));
        }
    }
    for (int c = 0; c < CHILDREN; c++) {
        int status = 0;
        CHECK(waitpid(pids[c], &status, 0) == pids[c]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    /* The dict: exactly every key, with its value. */
    size_t n = 0;
    CHECK(mp_dict_len(d, &n) == MP_OK);
    CHECK(n == CHILDREN * PER);
    char key[32], want[32], got[32];
    size_t len = 0;
    for (int c = 0; c < CHILDREN; c++) {
        for (int i = 0; i < PER; i++) {
            int klen = snprintf(key, sizeof key, "c%d-%d", c, i);
            int wlen = snprintf(want, sizeof want, "%d", i);
            CHECK(mp_dict_get(d, key, (size_t)klen, got, sizeof got, &len) == MP_OK);
            CHECK(len == (size_t)wlen && memcmp(got, want, len) == 0);
        }
    }
    /* The list: each item once, each child's items in its order. */
    CHECK(mp_list_len(l, &n) == MP_OK);
    CHECK(n == CHILDREN * PER);
    int next[CHILDREN] = {0};
    for (size_t k = 0; k < n; k++) {
        CHECK(mp_list_get(l, (int64_t)k, got, sizeof got - 1, &len) == MP_OK);
        got[len] = '\0';
        int c = -1, i = -1;
        CHECK(sscanf(got, "c%d:%d", &c, &i) == 2);
        CHECK(c >= 0 && c < CHILDREN && i == next[c]);
        next[c]++;
    }
    for (int c = 0; c < CHILDREN; c++) {
        CHECK(next[c] == PER);
    }

    /* Bad input: specific errors, nothing lost. */
    CHECK(mp_dict_get(d, "absent", 6, got, sizeof got, &len) == MP_ERR_NOT_FOUND);
    CHECK(mp_dict_del(d, "absent", 6) == MP_ERR_NOT_FOUND);
    CHECK(mp_dict_get(d, "c0-10", 5, got, 1, &len) == MP_ERR_TOO_LARGE);
    CHECK(len == 2);
    CHECK(mp_dict_get(d, "c0-10", 5, NULL, 0, &len) == MP_ERR_TOO_LARGE);
    CHECK(mp_dict_del(d, "c0-10", 5) == MP_OK);
    CHECK(mp_list_get(l, (int64_t)n, got, sizeof got, &len) == MP_ERR_VALUE);
    CHECK(mp_list_set(l, -1, "last", 4) == MP_OK);
    CHECK(mp_list_get(l, -1, got, sizeof got, &len) == MP_OK);
    CHECK(len == 4 && memcmp(got, "last", 4) == 0);
    CHECK(mp_dict_set(NULL, "k", 1, "v", 1) == MP_ERR_NULL);
    CHECK(mp_dict_set(d, NULL, 1, "v", 1) == MP_ERR_NULL);
    CHECK(mp_dict_len((mp_dict_t *)l, &n) == MP_ERR_INVALID);
    CHECK(mp_manager_start(7, &m) == MP_ERR_INVALID);
    uint8_t authkey[64];
    CHECK(mp_manager_authkey(m, authkey, sizeof authkey, &len) == MP_OK);
    CHECK(len == 32);

    /* A second connection with the key reaches the same dict. */
    mp_manager_t *other = NULL;
    CHECK(mp_manager_connect(address, authkey, len, &other) == MP_OK);
    uint64_t id = 0;
    CHECK(mp_dict_id(d, &id) == MP_OK);
    mp_dict_t *same = NULL;
    CHECK(mp_manager_attach_dict(other, id, &same) == MP_OK);
    CHECK(mp_dict_len(same, &n) == MP_OK);
    CHECK(n == CHILDREN * PER - 1);
    authkey[0] ^= 1;
    mp_manager_t *refused = NULL;
    CHECK(mp_manager_connect(address, authkey, len, &refused) == MP_ERR_AUTH);

    /* After shutdown every call fails at once. */
    CHECK(mp_manager_shutdown(m) == MP_OK);
    CHECK(mp_dict_len(d, &n) == MP_ERR_EOF);
    CHECK(mp_list_append(l, "x", 1) == MP_ERR_EOF);
    mp_dict_free(same);
    mp_manager_free(other);
    mp_dict_free(d);
    mp_list_free(l);
    mp_manager_free(m);

    /* A server started by spawn: a fresh run of this program, which mp_init
     * turns into the server (its entry registers itself at load). */
    CHECK(mp_manager_start(MP_START_SPAWN, &m) == MP_OK);
    CHECK(mp_manager_dict(m, &d) == MP_OK);
    CHECK(mp_dict_set(d, "spawned", 7, "yes", 3) == MP_OK);
    CHECK(mp_dict_get(d, "spawned", 7, got, sizeof got, &len) == MP_OK);
    CHECK(len == 3 && memcmp(got, "yes", 3) == 0);
    mp_dict_free(d);
    CHECK(mp_manager_shutdown(m) == MP_OK);
    mp_manager_free(m);
    printf("manager_dict: %d children, %d dict keys and list items each: ok\n", CHILDREN, PER);
    return 0;
}
