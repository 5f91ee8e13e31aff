/* securedir.c - checks (and creates) directories only the effective user controls
 * (securedir.h), so nobody else can plant spool batches or ring files we would ship. */
#include "securedir.h"
#include "fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Formats the reason into why (when given). Returns -1 always. */
__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t cap, const char *fmt, ...) {
    if (!why || cap == 0)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Checks the final directory's lstat result. Returns 0 or -1 with why set. */
static int check_own(const struct stat *st, char *why, size_t cap) {
    if (S_ISLNK(st->st_mode))
        return fail(why, cap, "is a symlink");
    if (!S_ISDIR(st->st_mode))
        return fail(why, cap, "not a directory");
    if (st->st_uid != geteuid())
        return fail(why, cap, "owned by uid %u", (unsigned)st->st_uid);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return fail(why, cap, "mode %04o", (unsigned)(st->st_mode & 07777));
    return 0;
}

/* An owner that may control an existing parent: root or us. */
static int trusted_uid(uid_t uid) {
    return uid == 0 || uid == geteuid();
}

/* Checks an existing parent directory (symlinks followed, each link's owner checked).
 * Returns 0 or -1 with why set. */
static int check_parent(const char *path, const struct stat *lst, char *why, size_t cap) {
    struct stat st = *lst;
    if (S_ISLNK(lst->st_mode)) {
        if (!trusted_uid(lst->st_uid))
            return fail(why, cap, "parent %s is a symlink owned by uid %u", path,
                        (unsigned)lst->st_uid);
        if (stat(path, &st) != 0)
            return fail(why, cap, "parent %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return fail(why, cap, "parent %s is not a directory", path);
    if (!trusted_uid(st.st_uid))
        return fail(why, cap, "parent %s owned by uid %u", path, (unsigned)st.st_uid);
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        return fail(why, cap, "parent %s has mode %04o", path, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* Creates path with mode 0700 and checks what is there afterwards without following a
 * symlink. Returns 0 when it is now our private directory (made by us or, after a race,
 * already there and ours), -1 with why set; *made says whether we created it. */
static int make_private(const char *path, int *made, char *why, size_t cap) {
    *made = 0;
    if (mkdir(path, 0700) == 0) {
        *made = 1;
    } else if (errno != EEXIST) {
        return fail(why, cap, "cannot create %s: %s", path, strerror(errno));
    }
    int fd = as_open_high(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) {
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return fail(why, cap, "is a symlink");
        return fail(why, cap, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0 && *made && st.st_uid == geteuid() && (st.st_mode & 07777) != 0700)
        rc = fchmod(fd, 0700) == 0 ? fstat(fd, &st) : -1;
    close(fd);
    if (rc != 0)
        return fail(why, cap, "cannot set up %s: %s", path, strerror(errno));
    return check_own(&st, why, cap);
}

int as_secure_dir(const char *path, int create, char *why, size_t cap) {
    char tmp[PATH_MAX];
    if (why && cap)
        why[0] = '\0';
    if (!path || !*path)
        return fail(why, cap, "empty path");
    size_t n = strlen(path);
    if (n >= sizeof tmp)
        return fail(why, cap, "path longer than %d bytes", PATH_MAX - 1);
    memcpy(tmp, path, n + 1);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';

    /* Parents, shortest first: each existing one checked, each missing one created. */
    int below_ours = 0; /* a parent we created: everything under it is ours */
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        struct stat lst;
        int rc = 0;
        if (lstat(tmp, &lst) == 0) {
            rc = below_ours ? check_own(&lst, why, cap) : check_parent(tmp, &lst, why, cap);
        } else if (errno != ENOENT || !create) {
            rc = fail(why, cap, "parent %s: %s", tmp, strerror(errno));
        } else {
            int made;
            rc = make_private(tmp, &made, why, cap);
            below_ours = below_ours || made;
        }
        *p = '/';
        if (rc != 0)
            return -1;
    }

    struct stat st;
    if (lstat(tmp, &st) == 0)
        return check_own(&st, why, cap);
    if (errno != ENOENT || !create)
        return fail(why, cap, "%s", strerror(errno));
    int made;
    return make_private(tmp, &made, why, cap);
}
