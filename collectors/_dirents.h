/* collectors/_dirents.h: one directory's entries, each stat-ed once, for the C listers
   of collectors/_bodylist.c (the timeline's lines, the system walk's executables). */
#ifndef PRESERVE_DIRENTS_H
#define PRESERVE_DIRENTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <sys/stat.h>

/* What is done with one entry that was stat-ed: 0 to go on, -1 with a Python error set. */
typedef int (*on_entry)(void *arg, const char *name, size_t nlen, const struct statx *sx);

int each_entry(int fd, PyObject *errors, on_entry fn, void *arg);
int add_subdir(PyObject *subdirs, PyObject *exclude, PyObject *exclude_devs, const char *name,
               size_t nlen, const struct statx *sx);
PyObject *list_exec(PyObject *self, PyObject *args);
extern const char list_exec_doc[];

#endif
