/* collectors/_dirents.c: the loop the C listers of collectors/_bodylist.c share: one
   directory's entries read with getdents64 on the descriptor the walk opened and checked
   (manifests/treewalk.py), each stat-ed once relative to it (AT_SYMLINK_NOFOLLOW |
   AT_NO_AUTOMOUNT), and list_exec, the system walk's use of it
   (collectors/systemwalk.py): of ~100,000 system files only the executables and
   libraries (with their raw struct statx) and the subdirectories become Python objects. */
#define _GNU_SOURCE
#include "_dirents.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define DENTS_SIZE (64 * 1024)

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static char *dents = NULL;

/* A subdirectory to enter unless excluded: appends (name, (dev, ino)) to subdirs. */
int add_subdir(PyObject *subdirs, PyObject *exclude, PyObject *exclude_devs,
                      const char *name, size_t nlen, const struct statx *sx) {
    PyObject *dev = PyLong_FromUnsignedLongLong(
        (unsigned long long)makedev(sx->stx_dev_major, sx->stx_dev_minor));
    if (dev == NULL) return -1;
    int skip = PySet_Contains(exclude_devs, dev);
    if (skip) {
        Py_DECREF(dev);
        return skip < 0 ? -1 : 0;
    }
    PyObject *ino = PyLong_FromUnsignedLongLong((unsigned long long)sx->stx_ino);
    PyObject *ident = ino ? PyTuple_Pack(2, dev, ino) : NULL;
    Py_DECREF(dev);
    Py_XDECREF(ino);
    if (ident == NULL) return -1;
    skip = PySet_Contains(exclude, ident);
    PyObject *raw = skip ? NULL : PyBytes_FromStringAndSize(name, (Py_ssize_t)nlen);
    PyObject *sub = raw ? PyTuple_Pack(2, raw, ident) : NULL;
    Py_DECREF(ident);
    Py_XDECREF(raw);
    if (skip) return skip < 0 ? -1 : 0;
    if (sub == NULL) return -1;
    int rc = PyList_Append(subdirs, sub);
    Py_DECREF(sub);
    return rc;
}

/* An entry that could not be stat-ed: (errno, name), bodywalk reports it (ENOENT: a
   name listed and gone since, counted as vanished). */
static int add_error(PyObject *errors, int err, const char *name, size_t nlen) {
    PyObject *item = Py_BuildValue("(iy#)", err, name, (Py_ssize_t)nlen);
    if (item == NULL) return -1;
    int rc = PyList_Append(errors, item);
    Py_DECREF(item);
    return rc;
}

/* Every entry of the directory open at fd but "." and "..", in directory order, stat-ed
   relative to it (AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) and handed to fn; the entries
   that cannot be stat-ed go to errors. 0 when done, 1 when statx is refused (ENOSYS),
   -1 with a Python error set (OSError: the directory cannot be read). */
int each_entry(int fd, PyObject *errors, on_entry fn, void *arg) {
    if (dents == NULL && (dents = malloc(DENTS_SIZE)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (;;) {
        long got = syscall(SYS_getdents64, fd, dents, DENTS_SIZE);
        if (got < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (got == 0) return 0;
        for (long at = 0; at < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(dents + at);
            at += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
            size_t nlen = strlen(name);
            struct statx sx;
            memset(&sx, 0, sizeof sx);
            if (statx(fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                      STATX_BASIC_STATS | STATX_BTIME, &sx) != 0) {
                if (errno == ENOSYS) return 1;
                if (add_error(errors, errno, name, nlen)) return -1;
                continue;
            }
            if (fn(arg, name, nlen, &sx)) return -1;
        }
    }
}

/* An executable or a library by systemwalk.is_executable's rule: any x bit, or a name
   ending in ".so" or holding ".so.". */
static int is_exec(unsigned mode, const char *name, size_t nlen) {
    if (mode & 0111) return 1;
    if (nlen >= 3 && memcmp(name + nlen - 3, ".so", 3) == 0) return 1;
    return memmem(name, nlen, ".so.", 4) != NULL;
}

const char list_exec_doc[] =
"list_exec(fd) -> (files, subdirs, errors) or None\n\n"
"The system walk's work for the directory open at fd (collectors/systemwalk.py): the\n"
"regular files that are executables or libraries as (name, raw struct statx bytes),\n"
"the subdirectories as (name, (dev, ino)), the entries that could not be stat-ed as\n"
"(errno, name), all in directory order. None when statx is refused (ENOSYS).\n"
"OSError when the directory cannot be read.";

/* list_exec's state while it lists one directory. */
typedef struct {
    PyObject *files, *subdirs, *none;
} ExecState;

static int exec_entry(void *arg, const char *name, size_t nlen, const struct statx *sx) {
    ExecState *st = arg;
    unsigned kind = sx->stx_mode & S_IFMT;
    if (kind == S_IFDIR) return add_subdir(st->subdirs, st->none, st->none, name, nlen, sx);
    if (kind != S_IFREG || !is_exec(sx->stx_mode, name, nlen)) return 0;
    PyObject *item = Py_BuildValue("(y#y#)", name, (Py_ssize_t)nlen, (const char *)sx,
                                   (Py_ssize_t)sizeof *sx);
    if (item == NULL) return -1;
    int rc = PyList_Append(st->files, item);
    Py_DECREF(item);
    return rc;
}

PyObject *list_exec(PyObject *self, PyObject *args) {
    (void)self;
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
    ExecState st = {PyList_New(0), PyList_New(0), PySet_New(NULL)};
    PyObject *errors = PyList_New(0), *result = NULL;
    if (st.files && st.subdirs && st.none && errors) {
        int rc = each_entry(fd, errors, exec_entry, &st);
        if (rc == 0)
            result = Py_BuildValue("(OOO)", st.files, st.subdirs, errors);
        else if (rc > 0)
            result = Py_NewRef(Py_None);
    }
    Py_XDECREF(st.files);
    Py_XDECREF(st.subdirs);
    Py_XDECREF(st.none);
    Py_XDECREF(errors);
    return result;
}
