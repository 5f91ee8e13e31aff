/* test_util.h - small helpers shared by several cmocka tests: locating a source file of
 * the tree from the test binary, running a formatted shell command, capturing as_log
 * messages, and building the dwarf_tools test program with its stripped and debuglink copies.
 * Header-only (static inline) because each test binary is built from one test file. */
#ifndef AS_TEST_UTIL_H
#define AS_TEST_UTIL_H

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Finds rel (a path inside the source tree, e.g. "tests/agents/dwarf_tools.c") from the
 * current directory or from a directory above the test binary, and writes its path to
 * out. Returns 0, or -1 when it is not found (out is then unspecified). */
static inline int as_test_find_source(const char *rel, char *out, size_t cap) {
    char base[PATH_MAX - 64];
    if (access(rel, R_OK) == 0)
        return realpath(rel, out) ? 0 : -1;
    ssize_t n = readlink("/proc/self/exe", base, sizeof(base) - 1);
    if (n <= 0)
        return -1;
    base[n] = '\0';
    for (int depth = 0; depth < 8; depth++) {
        char *slash = strrchr(base, '/');
        if (!slash || slash == base)
            return -1;
        *slash = '\0';
        snprintf(out, cap, "%s/%s", base, rel);
        if (access(out, R_OK) == 0)
            return 0;
    }
    return -1;
}

/* Runs a shell command built from fmt. Returns what system() returns (0 on success). */
__attribute__((format(printf, 1, 2))) static inline int as_test_sh(const char *fmt, ...) {
    char cmd[4 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Defines msgs[max][len] and nmsgs, and a __wrap_as_log (the test links with
 * -Wl,--wrap=as_log) that keeps the first max messages, each cut to len - 1 bytes, so the
 * tests can check what would have been printed. Resetting nmsgs is the test's job. */
#define AS_TEST_CAPTURE_LOG(max, len)                                                              \
    static char msgs[max][len];                                                                    \
    static int nmsgs;                                                                              \
    void __wrap_as_log(int level, const char *fmt, ...);                                           \
    void __wrap_as_log(int level, const char *fmt, ...) {                                          \
        (void)level;                                                                               \
        if (nmsgs >= (max))                                                                        \
            return;                                                                                \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vsnprintf(msgs[nmsgs++], sizeof msgs[0], fmt, ap);                                         \
        va_end(ap);                                                                                \
    }

/* Builds tests/agents/dwarf_tools.c the way tests/agents/dwarf.mk does into a new
 * directory made from the mkdtemp pattern in tmp_dir (tmp_dir receives its name):
 * tools (-g -O0 -rdynamic), stripped (strip --strip-all copy) and linked (symbols and
 * DWARF only in tools.debug, named by .gnu_debuglink). Returns 0, or -1 when a step
 * fails (tmp_dir, if made, is left for the caller to remove). */
static inline int as_test_build_dwarf_tools(char *tmp_dir, char *tools, size_t tools_cap,
                                            char *stripped, size_t stripped_cap, char *linked,
                                            size_t linked_cap) {
    char src[PATH_MAX];
    if (!mkdtemp(tmp_dir) ||
        as_test_find_source("tests/agents/dwarf_tools.c", src, sizeof(src)) != 0) {
        fprintf(stderr, "tests/agents/dwarf_tools.c not found: run from the source tree\n");
        return -1;
    }
    snprintf(tools, tools_cap, "%s/dwarf_tools", tmp_dir);
    snprintf(stripped, stripped_cap, "%s/stripped", tmp_dir);
    snprintf(linked, linked_cap, "%s/linked", tmp_dir);
    if (as_test_sh("cc -std=c11 -D_GNU_SOURCE -g -O0 -rdynamic -o %s %s", tools, src) != 0)
        return -1;
    if (as_test_sh("strip --strip-all -o %s %s", stripped, tools) != 0)
        return -1;
    /* Build-id lookup would go to /usr/lib/debug: remove the note so debuglink is used. */
    return as_test_sh("objcopy --only-keep-debug %s %s.debug && "
                      "objcopy --strip-all --remove-section=.note.gnu.build-id "
                      "--add-gnu-debuglink=%s.debug %s %s",
                      tools, tools, tools, tools, linked) == 0
               ? 0
               : -1;
}

#endif
