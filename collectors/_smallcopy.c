/* One small file of a batch copied in C (collectors/nativecopy.py): opened in its listed
   directory as open_source opens it, checked to be the file the walk's lstat saw, read
   once, hashed (SHA-256) and written under its announced name with the source's times,
   all with the GIL released.

   Through Python a small file cost about a dozen system calls, each handing the
   interpreter lock to the other copy worker and back (bench/RESULTS.md, issue 14); here
   it costs one hand-off. This needs to be right only about what it lets pass: on any
   surprise (not opened, not that regular file, larger than the room left, the
   announced name taken, a read or write or close that fails) it removes what it created
   and returns None, and the Python path copies that file again, making its error or
   skip record exactly as before. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "_sha256.h"

typedef struct {
    int src_dir, flags, noatime, out_dir, create_flags, chmod;
    const char *name, *out_name;
    unsigned long long dev, ino;
    long long most;
} Job;

typedef struct {
    struct stat opened, after;
    long long done;
    uint8_t digest[32];
} Result;

static int open_like_source(const Job *j) {
    int fd;
    do
        fd = openat(j->src_dir, j->name, j->flags | j->noatime);
    while (fd < 0 && errno == EINTR);
    if (fd < 0 && j->noatime && (errno == EPERM || errno == EACCES)) do
            fd = openat(j->src_dir, j->name, j->flags);
        while (fd < 0 && errno == EINTR);
    return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1: copied, r filled; 0: nothing left behind, the Python path copies it again. */
static int copy_one(const Job *j, Result *r) {
    int fd = open_like_source(j);
    if (fd < 0) return 0;
    struct stat *st = &r->opened;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || (unsigned long long)st->st_dev != j->dev ||
        (unsigned long long)st->st_ino != j->ino || st->st_size > j->most) {
        close(fd);
        return 0;
    }
    int out;
    do
        out = openat(j->out_dir, j->out_name, j->create_flags, 0444);
    while (out < 0 && errno == EINTR);
    if (out < 0) { /* taken (another process), no room: the Python path says which */
        close(fd);
        return 0;
    }
    uint8_t buf[65536];
    Sha256 h;
    sha256_init(&h, 1); /* the SHA extensions where the CPU has them */
    long long wanted = st->st_size, done = 0;
    while (done < wanted) {
        size_t ask = (size_t)(wanted - done < (long long)sizeof buf ? wanted - done : (long long)sizeof buf);
        ssize_t n = read(fd, buf, ask);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) goto failed;
        if (n == 0) break; /* shrank while read: what was there is the copy */
        sha256_update(&h, buf, (size_t)n);
        if (write_all(out, buf, (size_t)n) < 0) goto failed;
        done += n;
    }
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    (void)futimens(out, times); /* best effort, as LocalFile.finish */
    if (j->chmod) (void)fchmod(out, 0444);
    int closed = close(out);
    out = -1;
    if (closed < 0 || fstat(fd, &r->after) < 0) goto failed;
    close(fd);
    sha256_final(&h, r->digest);
    r->done = done;
    return 1;
failed:
    if (out >= 0) close(out);
    (void)unlinkat(j->out_dir, j->out_name, 0);
    close(fd);
    return 0;
}

static PyObject *time_float(const struct timespec *t) {
    return PyFloat_FromDouble((double)t->tv_sec + (double)t->tv_nsec * 1e-9);
}

static PyObject *time_ns(const struct timespec *t) {
    return PyLong_FromLongLong((long long)t->tv_sec * 1000000000LL + t->tv_nsec);
}

/* The 19 fields os.stat_result takes on Linux, in its order (checked against os.fstat
   in the tests). */
static PyObject *stat_tuple(const struct stat *s) {
    return Py_BuildValue(
        "(kKKkkkLLLLNNNNNNlLK)", (unsigned long)s->st_mode, (unsigned long long)s->st_ino,
        (unsigned long long)s->st_dev, (unsigned long)s->st_nlink, (unsigned long)s->st_uid,
        (unsigned long)s->st_gid, (long long)s->st_size, (long long)s->st_atim.tv_sec,
        (long long)s->st_mtim.tv_sec, (long long)s->st_ctim.tv_sec, time_float(&s->st_atim),
        time_float(&s->st_mtim), time_float(&s->st_ctim), time_ns(&s->st_atim),
        time_ns(&s->st_mtim), time_ns(&s->st_ctim), (long)s->st_blksize,
        (long long)s->st_blocks, (unsigned long long)s->st_rdev);
}

static const char HEX[] = "0123456789abcdef";

static PyObject *smallcopy_copy(PyObject *Py_UNUSED(self), PyObject *args) {
    Job j;
    /* "y": bytes without a NUL byte (else ValueError), NUL-terminated as openat wants */
    if (!PyArg_ParseTuple(args, "iyiiKKLiyip", &j.src_dir, &j.name, &j.flags, &j.noatime,
                          &j.dev, &j.ino, &j.most, &j.out_dir, &j.out_name, &j.create_flags,
                          &j.chmod))
        return NULL;
    Result r;
    int copied;
    Py_BEGIN_ALLOW_THREADS
    copied = copy_one(&j, &r);
    Py_END_ALLOW_THREADS
    if (!copied) Py_RETURN_NONE;
    char hex[64];
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = HEX[r.digest[i] >> 4];
        hex[2 * i + 1] = HEX[r.digest[i] & 15];
    }
    return Py_BuildValue("(NLs#LN)", stat_tuple(&r.opened), r.done, hex, (Py_ssize_t)64,
                         (long long)r.after.st_size, time_ns(&r.after.st_mtim));
}

static PyObject *smallcopy_sha256(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    int native = 1;
    if (!PyArg_ParseTuple(args, "y*|p", &data, &native)) return NULL;
    Sha256 h;
    uint8_t digest[32];
    sha256_init(&h, native);
    sha256_update(&h, data.buf, (size_t)data.len);
    sha256_final(&h, digest);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

static PyObject *smallcopy_native(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(noargs)) {
    return PyBool_FromLong(sha256_native_available());
}

static PyMethodDef methods[] = {
    {"copy", smallcopy_copy, METH_VARARGS,
     "copy(src_dir_fd, name, read_flags, noatime, dev, ino, most, out_dir_fd, out_name, "
     "create_flags, chmod) -> (stat fields, bytes copied, sha256 hex, size after, "
     "mtime_ns after), or None when the Python path must copy it"},
    {"sha256", smallcopy_sha256, METH_VARARGS, "sha256(data, native=True) -> digest"},
    {"native", smallcopy_native, METH_NOARGS, "native() -> does this CPU have SHA extensions"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_smallcopy", "Small files copied and hashed in C.", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__smallcopy(void) { return PyModule_Create(&module); }
