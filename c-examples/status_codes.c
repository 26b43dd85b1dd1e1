/*
 * status_codes.c -- every status code in multiproc.h has a name.
 *
 * Reads include/multiproc.h (or the path in argv[1]) and, for each
 * `#define MP_OK` / `#define MP_ERR_*` line, checks that mp_strerror() of the
 * value starts with the macro's name, so the check follows the header as it
 * grows. The codes this file was compiled with are checked the same way, and
 * must agree with the header text. mp_last_error() must never be NULL.
 *
 * Run by tests/c_examples.rs from the repository root; exits 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"

struct code {
    const char *name;
    int value;
};

/* The codes known when this was written; the header may have more. */
#define CODE(c) { #c, c }
static const struct code compiled[] = {
    CODE(MP_OK),          CODE(MP_ERR_INVALID),    CODE(MP_ERR_NULL),
    CODE(MP_ERR_TIMEOUT), CODE(MP_ERR_FULL),       CODE(MP_ERR_EMPTY),
    CODE(MP_ERR_CLOSED),  CODE(MP_ERR_TOO_LARGE),  CODE(MP_ERR_OWNER_DIED),
    CODE(MP_ERR_NOT_OWNER), CODE(MP_ERR_VALUE),    CODE(MP_ERR_BROKEN),
    CODE(MP_ERR_NOT_FOUND), CODE(MP_ERR_KIND),     CODE(MP_ERR_VERSION),
    CODE(MP_ERR_AUTH),    CODE(MP_ERR_EOF),        CODE(MP_ERR_OS),
    CODE(MP_ERR_STATE),   CODE(MP_ERR_INTERNAL),
};
#define N_COMPILED (sizeof compiled / sizeof compiled[0])

#define MAX_CODES 256

static int failures = 0;

static void check(int ok, const char *what, const char *name, int value) {
    if (!ok) {
        fprintf(stderr, "FAIL: %s (%s = %d)\n", what, name, value);
        failures++;
    }
}

/* mp_strerror(value) must start with `name` followed by ':' and a description. */
static void check_named(const char *name, int value) {
    const char *text = mp_strerror(value);
    size_t n = strlen(name);
    check(text != NULL, "mp_strerror returned NULL", name, value);
    if (text == NULL) {
        return;
    }
    check(strncmp(text, name, n) == 0 && text[n] == ':' && text[n + 1] != '\0',
          "mp_strerror does not name the code", name, value);
    printf("%-20s %4d  %s\n", name, value, text);
}

/* Collects `#define MP_OK <int>` and `#define MP_ERR_<X> <int>` lines. */
static size_t read_header_codes(const char *path, struct code *out, char names[][64]) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "FAIL: cannot open %s\n", path);
        exit(1);
    }
    char line[512];
    size_t count = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char name[64];
        int value;
        if (sscanf(line, "#define %63s %d", name, &value) != 2) {
            continue;
        }
        if (strcmp(name, "MP_OK") != 0 && strncmp(name, "MP_ERR_", 7) != 0) {
            continue;
        }
        if (count == MAX_CODES) {
            fprintf(stderr, "FAIL: more than %d codes in %s\n", MAX_CODES, path);
            exit(1);
        }
        strcpy(names[count], name);
        out[count].name = names[count];
        out[count].value = value;
        count++;
    }
    fclose(f);
    return count;
}

int main(int argc, char **argv) {
    const char *header = argc > 1 ? argv[1] : "include/multiproc.h";
    check(mp_last_error() != NULL, "mp_last_error is NULL before any call", "-", 0);

    static struct code parsed[MAX_CODES];
    static char names[MAX_CODES][64];
    size_t n = read_header_codes(header, parsed, names);
    check(n >= N_COMPILED, "the header has fewer codes than this example knows", header,
          (int)n);

    for (size_t i = 0; i < n; i++) {
        check_named(parsed[i].name, parsed[i].value);
        check(strcmp(parsed[i].name, "MP_OK") == 0 ? parsed[i].value == 0 : parsed[i].value < 0,
              "MP_OK must be 0 and every MP_ERR_* negative", parsed[i].name, parsed[i].value);
        for (size_t j = 0; j < i; j++) {
            check(parsed[j].value != parsed[i].value, "two codes share a value",
                  parsed[i].name, parsed[i].value);
        }
    }

    /* The compiled-in macros agree with the header text. */
    for (size_t i = 0; i < N_COMPILED; i++) {
        int found = 0;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(parsed[j].name, compiled[i].name) == 0) {
                found = 1;
                check(parsed[j].value == compiled[i].value,
                      "the header text and the compiled macro disagree", compiled[i].name,
                      compiled[i].value);
            }
        }
        check(found, "a compiled code is missing from the header text", compiled[i].name,
              compiled[i].value);
    }

    /* Numbers that are no code get the fixed text. */
    const int not_codes[] = {1, 42, -1000, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof not_codes / sizeof not_codes[0]; i++) {
        const char *text = mp_strerror(not_codes[i]);
        check(text != NULL && strcmp(text, "unknown status") == 0,
              "a number that is no code is not \"unknown status\"", "-", not_codes[i]);
    }

    check(mp_last_error() != NULL, "mp_last_error is NULL", "-", 0);
    printf("mp_last_error: %s\n", mp_last_error());

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("status_codes: %zu codes named\n", n);
    return 0;
}
