/* collectors/_bodylist.c: the timeline's per-directory work (collectors/bodywalk.py,
   BodyWalker._list) in C, because at half a million entries a host's timeline is
   nothing but this loop: read one directory's entries (getdents64 on the descriptor the
   walk opened and checked), statx each relative to it (AT_SYMLINK_NOFOLLOW |
   AT_NO_AUTOMOUNT, STATX_BASIC_STATS | STATX_BTIME) and write its bodyfile line, with no
   Python object per entry but the subdirectories to enter. The lines must be
   byte-identical to the Python lister's (body_name's escaping, mode_string's modes),
   which tests/test_bodylist.py checks; the descent and its safety checks stay in
   manifests/treewalk.py. Optional: where it cannot be built, bodywalk.py does the same
   in Python. The directory loop itself, shared with the system walk's list_exec, is
   collectors/_dirents.c. */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "_dirents.h"

#define KEEP_BYTES (4 << 20) /* the lines buffer kept from call to call, at most */

/* The lines being written: one growing buffer, reused from call to call. */
typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static Buf out = {NULL, 0, 0}, prefix = {NULL, 0, 0};

static int reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more) cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

/* What body_name writes as \xNN although it is ASCII: control bytes, DEL, '|', '\'. */
static int special(unsigned char c) { return c < 0x20 || c == 0x7f || c == '|' || c == '\\'; }

/* The length of the well-formed UTF-8 sequence at s (as Python's strict decoder takes
   it: no overlong forms, no surrogates, nothing above U+10FFFF), 0 if none starts there. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xc2 || c > 0xf4) return 0;
    if (c < 0xe0) return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
    if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
    if (c < 0xf0) return 3;
    if (n < 4 || (s[3] & 0xc0) != 0x80) return 0;
    if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0; /* above U+10FFFF */
    return 4;
}

/* A name as body_name writes it: special bytes and bytes not part of well-formed UTF-8
   as \xNN (lower-case hex), everything else as it is. Each byte of a malformed sequence
   is escaped on its own, as the decoder's backslashreplace does: a continuation byte can
   never begin a sequence, so restarting after one byte finds what the decoder finds. */
static int put_name(Buf *b, const unsigned char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (reserve(b, 4 * n)) return -1;
    char *p = b->data + b->len;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '|' && c != '\\') {
            *p++ = (char)c;
            i++;
            continue;
        }
        size_t k = special(c) ? 0 : utf8_seq(s + i, n - i);
        if (k) {
            memcpy(p, s + i, k);
            p += k;
            i += k;
        } else {
            p[0] = '\\', p[1] = 'x', p[2] = hex[c >> 4], p[3] = hex[c & 15];
            p += 4;
            i++;
        }
    }
    b->len = (size_t)(p - b->data);
    return 0;
}

/* stat.filemode's type letter ('-' for a regular file, '?' for an unknown type). */
static char kind_of(unsigned mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return '-';
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFBLK: return 'b';
    case S_IFCHR: return 'c';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
    default: return '?';
    }
}

/* mode_string: "r/rrwxr-xr-x", TSK's name type, '/', meta type and permissions. */
static void mode_chars(unsigned mode, char m[12]) {
    char kind = kind_of(mode);
    if (kind == '-') kind = 'r';
    m[0] = kind, m[1] = '/', m[2] = kind;
    m[3] = mode & S_IRUSR ? 'r' : '-';
    m[4] = mode & S_IWUSR ? 'w' : '-';
    m[5] = mode & S_ISUID ? (mode & S_IXUSR ? 's' : 'S') : (mode & S_IXUSR ? 'x' : '-');
    m[6] = mode & S_IRGRP ? 'r' : '-';
    m[7] = mode & S_IWGRP ? 'w' : '-';
    m[8] = mode & S_ISGID ? (mode & S_IXGRP ? 's' : 'S') : (mode & S_IXGRP ? 'x' : '-');
    m[9] = mode & S_IROTH ? 'r' : '-';
    m[10] = mode & S_IWOTH ? 'w' : '-';
    m[11] = mode & S_ISVTX ? (mode & S_IXOTH ? 't' : 'T') : (mode & S_IXOTH ? 'x' : '-');
}

/* '|' and a number in decimal, as Python's str() writes it: two digits a division. */
static char *put_u64(char *p, uint64_t v) {
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                "31323334353637383940414243444546474849505152535455565758596061"
                                "62636465666768697071727374757677787980818283848586878889909192"
                                "93949596979899";
    char digits[20];
    int n = 20;
    while (v >= 100) {
        unsigned k = (unsigned)(v % 100) * 2;
        v /= 100;
        digits[--n] = pairs[k + 1];
        digits[--n] = pairs[k];
    }
    if (v >= 10) {
        digits[--n] = pairs[v * 2 + 1];
        digits[--n] = pairs[v * 2];
    } else {
        digits[--n] = (char)('0' + v);
    }
    *p++ = '|';
    memcpy(p, digits + n, (size_t)(20 - n));
    return p + (20 - n);
}

static char *put_i64(char *p, int64_t v) {
    if (v >= 0) return put_u64(p, (uint64_t)v);
    char *q = put_u64(p, -(uint64_t)v); /* "|N": make it "|-N" */
    memmove(p + 2, p + 1, (size_t)(q - p - 1));
    p[1] = '-';
    return q + 1;
}

/* One line: 0|prefix+name|ino|mode|uid|gid|size|atime|mtime|ctime|crtime */
static int put_line(Buf *b, const char *prefix, size_t plen, const char *name, size_t nlen,
                    const struct statx *sx, int64_t birth) {
    if (reserve(b, plen + 2)) return -1;
    b->data[b->len++] = '0';
    b->data[b->len++] = '|';
    memcpy(b->data + b->len, prefix, plen);
    b->len += plen;
    if (put_name(b, (const unsigned char *)name, nlen) || reserve(b, 7 * 21 + 14 + 1)) return -1;
    char *p = put_u64(b->data + b->len, sx->stx_ino);
    *p++ = '|';
    mode_chars(sx->stx_mode, p);
    p = put_u64(p + 12, sx->stx_uid);
    p = put_u64(p, sx->stx_gid);
    p = put_u64(p, sx->stx_size);
    p = put_i64(p, sx->stx_atime.tv_sec);
    p = put_i64(p, sx->stx_mtime.tv_sec);
    p = put_i64(p, sx->stx_ctime.tv_sec);
    p = put_i64(p, birth);
    *p++ = '\n';
    b->len = (size_t)(p - b->data);
    return 0;
}

/* list_dir's state while it lists one directory. */
typedef struct {
    PyObject *subdirs, *exclude, *exclude_devs;
    Py_ssize_t count, births;
} BodyState;

static int body_entry(void *arg, const char *name, size_t nlen, const struct statx *sx) {
    BodyState *st = arg;
    int64_t birth = sx->stx_mask & STATX_BTIME ? (int64_t)sx->stx_btime.tv_sec : 0;
    st->births += birth != 0;
    if (put_line(&out, prefix.data, prefix.len, name, nlen, sx, birth)) {
        PyErr_NoMemory();
        return -1;
    }
    st->count++;
    if ((sx->stx_mode & S_IFMT) == S_IFDIR)
        return add_subdir(st->subdirs, st->exclude, st->exclude_devs, name, nlen, sx);
    return 0;
}

PyDoc_STRVAR(list_dir_doc,
"list_dir(fd, path, exclude, exclude_devs) -> (lines, count, births, subdirs, errors)\n"
"or None\n\n"
"The bodyfile lines of the directory open at fd, whose path is path,\n"
"how many lines and how many with a birth time, the subdirectories not excluded as\n"
"(name, (dev, ino)), the entries that could not be stat-ed as (errno, name). None when\n"
"statx is refused (ENOSYS): nothing was listed, the caller lists in Python instead.\n"
"OSError when the directory cannot be read.");

static PyObject *list_dir(PyObject *self, PyObject *args) {
    (void)self;
    int fd;
    const char *path;
    Py_ssize_t plen;
    PyObject *exclude, *exclude_devs;
    if (!PyArg_ParseTuple(args, "iy#OO", &fd, &path, &plen, &exclude, &exclude_devs))
        return NULL;
    if (!PyAnySet_Check(exclude) || !PyAnySet_Check(exclude_devs)) {
        PyErr_SetString(PyExc_TypeError, "exclude and exclude_devs must be sets");
        return NULL;
    }
    PyObject *subdirs = PyList_New(0), *errors = PyList_New(0);
    if (subdirs == NULL || errors == NULL) goto fail;
    /* The entries' prefix: the path escaped, without its trailing slashes, then one. */
    while (plen && path[plen - 1] == '/') plen--;
    prefix.len = 0;
    if (put_name(&prefix, (const unsigned char *)path, (size_t)plen) || reserve(&prefix, 1)) {
        PyErr_NoMemory();
        goto fail;
    }
    prefix.data[prefix.len++] = '/';
    out.len = 0;
    BodyState st = {subdirs, exclude, exclude_devs, 0, 0};
    int rc = each_entry(fd, errors, body_entry, &st);
    if (rc < 0) goto fail;
    if (rc > 0) {
        Py_DECREF(subdirs);
        Py_DECREF(errors);
        Py_RETURN_NONE;
    }
    Py_ssize_t count = st.count, births = st.births;
    PyObject *lines = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.len);
    if (out.cap > KEEP_BYTES) { /* one huge directory does not keep its buffer */
        free(out.data);
        out.data = NULL, out.len = out.cap = 0;
    }
    if (lines == NULL) goto fail;
    return Py_BuildValue("(NnnNN)", lines, count, births, subdirs, errors);
fail:
    Py_XDECREF(subdirs);
    Py_XDECREF(errors);
    return NULL;
}

PyDoc_STRVAR(body_name_doc, "body_name(name) -> bytes: the name escaped as bodywalk.body_name.");

static PyObject *py_body_name(PyObject *self, PyObject *arg) {
    (void)self;
    char *s;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &s, &n) < 0) return NULL;
    Buf b = {NULL, 0, 0};
    if (put_name(&b, (const unsigned char *)s, (size_t)n)) {
        free(b.data);
        return PyErr_NoMemory();
    }
    PyObject *r = PyBytes_FromStringAndSize(b.data ? b.data : "", (Py_ssize_t)b.len);
    free(b.data);
    return r;
}

PyDoc_STRVAR(mode_string_doc, "mode_string(mode) -> str: as bodywalk.mode_string.");

static PyObject *py_mode_string(PyObject *self, PyObject *arg) {
    (void)self;
    unsigned long mode = PyLong_AsUnsignedLong(arg);
    if (mode == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    char m[12];
    mode_chars((unsigned)mode, m);
    return PyUnicode_FromStringAndSize(m, 12);
}

static PyMethodDef methods[] = {
    {"list_dir", list_dir, METH_VARARGS, list_dir_doc},
    {"list_exec", list_exec, METH_VARARGS, list_exec_doc},
    {"body_name", py_body_name, METH_O, body_name_doc},
    {"mode_string", py_mode_string, METH_O, mode_string_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_bodylist", "The timeline's and the system walk's per-directory listers in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bodylist(void) { return PyModule_Create(&module); }
