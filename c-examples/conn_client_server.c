/*
 * conn_client_server.c -- a listener and clients in fork children, over TCP
 * on 127.0.0.1 and over a Unix socket, authenticated with a shared key; a
 * pipe; and the errors bad input gets.
 *
 * The parent listens (port 0: the system picks one; mp_listener_address
 * says which) and starts client children with the fork start method. A
 * client sends the numbers 1..ROUNDS as text, one message each, and checks
 * that each answer is the square. A client with the wrong key is refused
 * on both sides (MP_ERR_AUTH), and the listener goes on serving. Then a
 * pipe in one process: too-small buffers, timeouts, mp_wait, a one-way pipe.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude c-examples/conn_client_server.c \
 *            target/debug/libmultiproc.a -lpthread -ldl -lm
 * Exits 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L

#include "multiproc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 100
#define DEADLINE_NS (30LL * 1000 * 1000 * 1000)

static const uint8_t KEY[] = "conn example key";
static const uint8_t WRONG_KEY[] = "not the key";

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, mp_last_error());                 \
            return 1;                                                            \
        }                                                                        \
    } while (0)

/* A client child. The argument: one byte (1: use the wrong key), then the
 * listener's address text. Exit codes: 0 all squares right, 3 refused
 * (MP_ERR_AUTH), 10+ something else failed. */
static int client(const uint8_t *arg, size_t arg_len) {
    char address[256];
    if (arg_len < 2 || arg_len - 1 >= sizeof address) {
        return 10;
    }
    int wrong = arg[0];
    memcpy(address, arg + 1, arg_len - 1);
    address[arg_len - 1] = '\0';

    const uint8_t *key = wrong ? WRONG_KEY : KEY;
    size_t keylen = wrong ? sizeof WRONG_KEY - 1 : sizeof KEY - 1;
    mp_conn_t *conn = NULL;
    int rc = mp_client_connect_timeout(address, key, keylen, DEADLINE_NS, &conn);
    if (rc == MP_ERR_AUTH) {
        return 3;
    }
    if (rc != MP_OK) {
        fprintf(stderr, "client: %s\n", mp_last_error());
        return 11;
    }
    for (long i = 1; i <= ROUNDS; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "%ld", i);
        if (mp_conn_send_bytes(conn, msg, (size_t)n) != MP_OK) {
            return 12;
        }
        char reply[32];
        size_t len = 0;
        if (mp_conn_recv_bytes(conn, reply, sizeof reply - 1, &len, DEADLINE_NS) != MP_OK) {
            return 13;
        }
        reply[len] = '\0';
        if (strtol(reply, NULL, 10) != i * i) {
            return 14;
        }
    }
    mp_conn_free(conn);
    return 0;
}

static int start_client(const char *address, int wrong, mp_process_t **out) {
    uint8_t arg[257];
    size_t len = strlen(address);
    if (len + 1 > sizeof arg) {
        return MP_ERR_INVALID;
    }
    arg[0] = (uint8_t)wrong;
    memcpy(arg + 1, address, len);
    return mp_process_start(MP_START_FORK, "client", arg, len + 1, out);
}

static int join(mp_process_t *p) {
    int code = -1000;
    if (mp_process_join(p, DEADLINE_NS, &code) != MP_OK) {
        code = -1000;
    }
    mp_process_free(p);
    return code;
}

/* Answers each number with its square until the client hangs up. */
static int serve(mp_conn_t *conn) {
    for (;;) {
        char msg[32];
        size_t len = 0;
        int rc = mp_conn_recv_bytes(conn, msg, sizeof msg - 1, &len, DEADLINE_NS);
        if (rc == MP_ERR_EOF) {
            return 0;
        }
        CHECK(rc == MP_OK);
        msg[len] = '\0';
        long x = strtol(msg, NULL, 10);
        char reply[32];
        int n = snprintf(reply, sizeof reply, "%ld", x * x);
        CHECK(mp_conn_send_bytes(conn, reply, (size_t)n) == MP_OK);
    }
}

/* One listener: a good client, a client with the wrong key, a good one. */
static int run_listener(const char *address) {
    mp_listener_t *l = NULL;
    CHECK(mp_listener_new(address, KEY, sizeof KEY - 1, &l) == MP_OK);
    char where[256];
    CHECK(mp_listener_address(l, where, sizeof where) == MP_OK);

    for (int wrong = 0; wrong < 3; wrong++) {
        int is_wrong = wrong == 1;
        mp_process_t *child = NULL;
        CHECK(start_client(where, is_wrong, &child) == MP_OK);
        mp_conn_t *conn = NULL;
        int rc = mp_listener_accept(l, DEADLINE_NS, &conn);
        if (is_wrong) {
            CHECK(rc == MP_ERR_AUTH);
            CHECK(join(child) == 3);
            continue;
        }
        CHECK(rc == MP_OK);
        CHECK(serve(conn) == 0);
        mp_conn_free(conn);
        CHECK(join(child) == 0);
    }
    mp_conn_t *none = NULL;
    CHECK(mp_listener_accept(l, 0, &none) == MP_ERR_TIMEOUT);
    mp_listener_free(l);
    printf("conn_client_server: %s served 2 clients (%d squares each), refused a wrong key\n",
           where, ROUNDS);
    return 0;
}

static int check_pipe(void) {
    mp_conn_t *a = NULL, *b = NULL;
    CHECK(mp_pipe(1, &a, &b) == MP_OK);
    CHECK(mp_conn_poll(b, 0) == 0);
    CHECK(mp_conn_send_bytes(a, "0123456789", 10) == MP_OK);
    CHECK(mp_conn_poll(b, DEADLINE_NS) == 1);
    char small[4];
    size_t len = 0;
    /* Too small: the message stays, and *len says how big it is. */
    CHECK(mp_conn_recv_bytes(b, small, sizeof small, &len, 0) == MP_ERR_TOO_LARGE);
    CHECK(len == 10);
    char buf[16];
    CHECK(mp_conn_recv_bytes(b, buf, sizeof buf, &len, 0) == MP_OK);
    CHECK(len == 10 && memcmp(buf, "0123456789", 10) == 0);
    CHECK(mp_conn_recv_bytes(b, buf, sizeof buf, &len, 0) == MP_ERR_TIMEOUT);

    mp_conn_t *both[2] = {a, b};
    uint8_t ready[2] = {9, 9};
    CHECK(mp_wait(both, 2, 0, ready) == 0);
    CHECK(mp_conn_send_bytes(b, "x", 1) == MP_OK);
    CHECK(mp_wait(both, 2, DEADLINE_NS, ready) == 1);
    CHECK(ready[0] == 1 && ready[1] == 0);

    /* A one-way pipe: the first end only receives. */
    mp_conn_t *r = NULL, *w = NULL;
    CHECK(mp_pipe(0, &r, &w) == MP_OK);
    CHECK(mp_conn_send_bytes(r, "x", 1) == MP_ERR_STATE);
    mp_conn_free(w);
    CHECK(mp_conn_recv_bytes(r, buf, sizeof buf, &len, DEADLINE_NS) == MP_ERR_EOF);
    mp_conn_free(r);
    mp_conn_free(a);
    mp_conn_free(b);
    return 0;
}

static int check_bad_input(void) {
    mp_listener_t *l = NULL;
    mp_conn_t *c = NULL;
    size_t len = 0;
    CHECK(mp_listener_new("tcp:127.0.0.1", NULL, 0, &l) == MP_ERR_INVALID);
    CHECK(strstr(mp_last_error(), "tcp:HOST:PORT") != NULL);
    CHECK(mp_listener_new("carrier-pigeon:x", NULL, 0, &l) == MP_ERR_INVALID);
    CHECK(mp_listener_new(NULL, NULL, 0, &l) == MP_ERR_NULL);
    CHECK(mp_listener_new("tcp:127.0.0.1:0", NULL, 5, &l) == MP_ERR_NULL);
    CHECK(mp_listener_new("tcp:127.0.0.1:0", NULL, 0, NULL) == MP_ERR_NULL);
    CHECK(mp_client_connect("unix:", NULL, 0, &c) == MP_ERR_INVALID);
    CHECK(mp_listener_accept(NULL, 0, &c) == MP_ERR_NULL);
    CHECK(mp_conn_send_bytes(NULL, "x", 1) == MP_ERR_NULL);
    CHECK(mp_conn_recv_bytes(NULL, NULL, 0, &len, 0) == MP_ERR_NULL);
    CHECK(mp_conn_poll(NULL, 0) == MP_ERR_NULL);
    CHECK(mp_pipe(1, NULL, &c) == MP_ERR_NULL);
    mp_conn_free(NULL);
    mp_listener_free(NULL);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(mp_register("client", client) == MP_OK);
    CHECK(mp_init(argc, argv) == MP_OK);

    if (run_listener("tcp:127.0.0.1:0") != 0) {
        return 1;
    }

    char dir[] = "/tmp/mp-conn-example-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char address[128];
    snprintf(address, sizeof address, "unix:%s/listener.sock", dir);
    int unix_result = run_listener(address);
    char path[128];
    snprintf(path, sizeof path, "%s/listener.sock", dir);
    CHECK(access(path, F_OK) != 0); /* the listener removed its socket file */
    CHECK(rmdir(dir) == 0);
    if (unix_result != 0) {
        return 1;
    }

    if (check_pipe() != 0 || check_bad_input() != 0) {
        return 1;
    }
    printf("conn_client_server: pipe and bad-input checks passed\n");
    return 0;
}
