/* MD5 of many independent streams at once, one stream a SIMD lane: the Python object.

   MD5 of one stream is serial (each step needs the last), so one core hashes one file
   at ~0.8 GB/s; but the same 64 steps on 16 streams fit the 16 32-bit lanes of an
   AVX-512 register (8 of AVX2), so a core hashes 16 files in about the time of one.
   The package check is ~100,000 files whose MD5 dpkg recorded: independent streams.

   Lanes(engine=None, buffer=65536) holds `lanes` streams. feed(lane, data, last) hands
   a lane its next bytes (whole 64-byte blocks unless last; with last the lane pads
   itself, so lanes of any lengths finish right); feed_fd(lane, fd, size) has the lane
   read an open file to its end itself. run() hashes every fed lane in lockstep, the GIL
   released, until one or more lanes have used up what they had, and says which, with
   the digest of those that ended. check(paths, md5s, ...) does a whole batch of the
   packages check in C and names only the files that did not match (_md5check.c). The kernels are collectors/_md5simd.c (each compiled
   for its own target, chosen at run time), the lanes' streams collectors/_md5stream.c.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_md5stream.h"

static const char *const ENGINE_NAMES[] = {"scalar", "avx2", "avx512"};
static const int ENGINE_LANES[] = {1, 8, 16};

typedef struct {
    PyObject_HEAD
    int busy;                  /* run() is hashing, the GIL released */
    LaneSet set;
    Py_buffer view[MAXLANES];  /* a fed buffer, held until its lane has used it up */
    int holding[MAXLANES];
    CheckLanes check;          /* the files check() has in the lanes between its calls */
    Py_ssize_t handed;         /* files handed to check() so far: the next one's number */
} LanesObject;

static void release(LanesObject *self, int i) {
    if (self->holding[i]) {
        PyBuffer_Release(&self->view[i]);
        self->holding[i] = 0;
    }
}

/* A lane that can be given new bytes: not hashing, not still holding some. */
static int check_lane(LanesObject *self, int i) {
    if (self->busy) {
        PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
        return -1;
    }
    if (i < 0 || i >= self->set.nlanes) {
        PyErr_Format(PyExc_IndexError, "no lane %d", i);
        return -1;
    }
    if (self->set.lane[i].fed || self->check.owner[i] >= 0) {
        PyErr_Format(PyExc_ValueError, "lane %d still has data", i);
        return -1;
    }
    return 0;
}

static PyObject *Lanes_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"engine", "buffer", NULL};
    const char *name = NULL;
    Py_ssize_t bufsize = 64 * 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|zn", kwlist, &name, &bufsize)) return NULL;
    if (bufsize < 64 || bufsize % 64)
        return PyErr_Format(PyExc_ValueError, "the buffer must be whole 64-byte blocks");
    int engine = -1;
    if (name == NULL) {
        for (int e = ENGINE_AVX512; e >= ENGINE_SCALAR; e--)
            if (md5_engine_supported(e)) {
                engine = e;
                break;
            }
    } else {
        for (int e = 0; e < 3; e++)
            if (strcmp(name, ENGINE_NAMES[e]) == 0) engine = e;
        if (engine < 0) return PyErr_Format(PyExc_ValueError, "unknown MD5 engine %s", name);
        if (!md5_engine_supported(engine))
            return PyErr_Format(PyExc_ValueError, "this CPU lacks %s", name);
    }
    LanesObject *self = (LanesObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->set.engine = engine;
    self->set.bufsize = bufsize;
    /* the scalar engine has as many lanes as AVX2, so a scheduler is the same on all */
    self->set.nlanes = engine == ENGINE_SCALAR ? 8 : ENGINE_LANES[engine];
    for (int i = 0; i < MAXLANES; i++) {
        self->set.lane[i].buf = NULL;
        self->holding[i] = 0;
        lane_reset(&self->set, i);
    }
    check_lanes_init(&self->set, &self->check);
    self->handed = 0;
    return (PyObject *)self;
}

static void Lanes_dealloc(LanesObject *self) {
    check_lanes_close(&self->set, &self->check);
    for (int i = 0; i < MAXLANES; i++) {
        release(self, i);
        PyMem_Free(self->set.lane[i].buf);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lanes_feed(LanesObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"lane", "data", "last", NULL};
    int i, last = 0;
    PyObject *data;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO|p", kwlist, &i, &data, &last)) return NULL;
    if (check_lane(self, i) < 0) return NULL;
    release(self, i);
    if (PyObject_GetBuffer(data, &self->view[i], PyBUF_SIMPLE) < 0) return NULL;
    self->holding[i] = 1;
    Py_ssize_t len = self->view[i].len;
    if (!last && len % 64) {
        release(self, i);
        return PyErr_Format(PyExc_ValueError, "a buffer that is not the last must be whole blocks");
    }
    lane_set_bytes(&self->set, i, (const uint8_t *)self->view[i].buf, len, last);
    Py_RETURN_NONE;
}

static PyObject *Lanes_feed_fd(LanesObject *self, PyObject *args) {
    int i, fd;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iin", &i, &fd, &size)) return NULL;
    if (check_lane(self, i) < 0) return NULL;
    if (fd < 0) return PyErr_Format(PyExc_ValueError, "bad descriptor %d", fd);
    Lane *l = &self->set.lane[i];
    if (l->buf == NULL && (l->buf = PyMem_Malloc((size_t)self->set.bufsize)) == NULL)
        return PyErr_NoMemory();
    release(self, i);
    lane_set_file(&self->set, i, fd, size);
    Py_RETURN_NONE;
}

static PyObject *Lanes_run(LanesObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    for (int i = 0; i < self->set.nlanes; i++)
        if (self->check.owner[i] >= 0)
            return PyErr_Format(PyExc_ValueError, "lane %d is check()'s: end it with last", i);
    self->busy = 1;
    unsigned done;
    Py_BEGIN_ALLOW_THREADS done = lanes_hash(&self->set);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (int i = 0; i < self->set.nlanes; i++) {
        if (!(done & (1u << i))) continue;
        Lane *l = &self->set.lane[i];
        release(self, i);
        PyObject *digest;
        if (l->err) {
            digest = PyLong_FromLong(l->err);
            lane_reset(&self->set, i);
        } else if (l->last) {
            uint8_t raw[16];
            lane_digest(&self->set, i, raw);
            digest = PyBytes_FromStringAndSize((const char *)raw, 16);
            lane_reset(&self->set, i);
        } else {
            digest = Py_NewRef(Py_None);
        }
        PyObject *item = digest ? Py_BuildValue("(iN)", i, digest) : NULL;
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

/* A recorded MD5 as the compare in C takes it: 32 lowercase hex digits, else NULL (any
   other text, even the same digest in capitals, never matches in Python either). */
static const char *hex_md5(PyObject *o) {
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) != 32) return NULL;
    const char *s = PyBytes_AS_STRING(o);
    for (int j = 0; j < 32; j++)
        if (!((s[j] >= '0' && s[j] <= '9') || (s[j] >= 'a' && s[j] <= 'f'))) return NULL;
    return s;
}

static PyObject *index_list(const ptrdiff_t *k, ptrdiff_t n) {
    PyObject *out = PyList_New(n);
    for (ptrdiff_t j = 0; out != NULL && j < n; j++) {
        PyObject *index = PyLong_FromSsize_t(k[j]);
        if (index == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, j, index);
    }
    return out;
}

static PyObject *check_run(LanesObject *self, CheckBatch *b, PyObject *paths, PyObject *sums,
                           const char **p, const char **s) {
    for (Py_ssize_t k = 0; k < b->n; k++) {
        PyObject *path = PyTuple_GET_ITEM(paths, k);
        if (!PyBytes_Check(path)) return PyErr_Format(PyExc_TypeError, "paths must be bytes");
        p[k] = PyBytes_AS_STRING(path);
        /* a path with a NUL in it is not opened here (Python says what it is) */
        s[k] = strlen(p[k]) == (size_t)PyBytes_GET_SIZE(path) ? hex_md5(PyTuple_GET_ITEM(sums, k))
                                                               : NULL;
    }
    for (int i = 0; i < self->set.nlanes; i++) {
        Lane *l = &self->set.lane[i];
        if (l->buf == NULL && (l->buf = PyMem_Malloc((size_t)self->set.bufsize)) == NULL)
            return PyErr_NoMemory();
    }
    ptrdiff_t *odd = PyMem_Malloc(sizeof *odd * (size_t)(b->n + MAXLANES));
    if (odd == NULL) return PyErr_NoMemory();
    b->paths = p;
    b->sums = s;
    b->first = self->handed;
    self->handed += b->n;
    self->busy = 1;
    ptrdiff_t nodd;
    Py_BEGIN_ALLOW_THREADS nodd = md5_check_batch(&self->set, &self->check, b, odd);
    Py_END_ALLOW_THREADS self->busy = 0;
    ptrdiff_t held[MAXLANES], nheld = 0;
    for (int i = 0; i < self->set.nlanes; i++)
        if (self->check.owner[i] >= 0) held[nheld++] = self->check.owner[i];
    PyObject *named = index_list(odd, nodd), *going = index_list(held, nheld);
    PyMem_Free(odd);
    if (named == NULL || going == NULL) {
        Py_XDECREF(named);
        Py_XDECREF(going);
        return NULL;
    }
    return Py_BuildValue("(NN)", named, going);
}

static PyObject *Lanes_check(LanesObject *self, PyObject *args) {
    PyObject *paths_in, *sums_in, *exec_in;
    CheckBatch b = {0};
    if (!PyArg_ParseTuple(args, "OOOiip", &paths_in, &sums_in, &exec_in, &b.flags, &b.noatime,
                          &b.last))
        return NULL;
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    for (int i = 0; i < self->set.nlanes; i++)
        if (self->set.lane[i].fed && self->check.owner[i] < 0)
            return PyErr_Format(PyExc_ValueError, "lane %d has data", i);
    PyObject *paths = PySequence_Tuple(paths_in), *sums = NULL, *out = NULL;
    Py_buffer ex = {0};
    const char **p = NULL, **s = NULL;
    if (paths == NULL || (sums = PySequence_Tuple(sums_in)) == NULL) goto done;
    b.n = PyTuple_GET_SIZE(paths);
    if (PyTuple_GET_SIZE(sums) != b.n) {
        PyErr_Format(PyExc_ValueError, "as many sums as paths");
        goto done;
    }
    if (exec_in != Py_None) {
        if (PyObject_GetBuffer(exec_in, &ex, PyBUF_SIMPLE) < 0) goto done;
        if (ex.len != b.n) {
            PyErr_Format(PyExc_ValueError, "one if_exec byte a path");
            goto done;
        }
        b.if_exec = ex.buf;
    }
    p = PyMem_Malloc(sizeof *p * (size_t)(b.n ? b.n : 1));
    s = PyMem_Malloc(sizeof *s * (size_t)(b.n ? b.n : 1));
    if (p == NULL || s == NULL)
        PyErr_NoMemory();
    else
        out = check_run(self, &b, paths, sums, p, s);
done:
    PyMem_Free(p);
    PyMem_Free(s);
    if (ex.obj != NULL) PyBuffer_Release(&ex);
    Py_XDECREF(paths);
    Py_XDECREF(sums);
    return out;
}

static PyObject *Lanes_reset(LanesObject *self, PyObject *arg) {
    int i = (int)PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    if (i < 0 || i >= self->set.nlanes) return PyErr_Format(PyExc_IndexError, "no lane %d", i);
    if (self->check.owner[i] >= 0) return PyErr_Format(PyExc_ValueError, "lane %d checks", i);
    release(self, i);
    lane_reset(&self->set, i);
    Py_RETURN_NONE;
}

static PyObject *Lanes_get_engine(LanesObject *self, void *Py_UNUSED(c)) {
    return PyUnicode_FromString(ENGINE_NAMES[self->set.engine]);
}

static PyObject *Lanes_get_lanes(LanesObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(self->set.nlanes);
}

static PyMethodDef Lanes_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))Lanes_feed, METH_VARARGS | METH_KEYWORDS,
     "feed(lane, data, last=False): the lane's next bytes (whole 64-byte blocks unless last)"},
    {"feed_fd", (PyCFunction)Lanes_feed_fd, METH_VARARGS,
     "feed_fd(lane, fd, size): the lane reads the open file itself, to its end (the caller "
     "keeps and closes fd)"},
    {"run", (PyCFunction)Lanes_run, METH_NOARGS,
     "run() -> [(lane, digest | None | errno)]: hash until one or more lanes have used up "
     "their data (None: feed it more) or their file (an int: a read failed)"},
    {"reset", (PyCFunction)Lanes_reset, METH_O, "reset(lane): drop a lane's stream"},
    {"check", (PyCFunction)Lanes_check, METH_VARARGS,
     "check(paths, md5s, if_exec, flags, noatime, last) -> (named, held): open each path as "
     "open_source does (flags | noatime), hash it and compare with its recorded MD5 (32 "
     "lowercase hex digits). Files are numbered 0, 1, ... across calls; a call returns when "
     "its files have all started (last: ended), with the numbers of the ended files that are "
     "not a regular file with that MD5 (or are, with an execute bit, where if_exec[k]) and of "
     "those still in the lanes (_md5check.c)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Lanes_getset[] = {
    {"engine", (getter)Lanes_get_engine, NULL, "the engine's name", NULL},
    {"lanes", (getter)Lanes_get_lanes, NULL, "how many streams at once", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject LanesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._md5lanes.Lanes",
    .tp_basicsize = sizeof(LanesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "MD5 of several streams at once, one a SIMD lane",
    .tp_new = Lanes_new,
    .tp_dealloc = (destructor)Lanes_dealloc,
    .tp_methods = Lanes_methods,
    .tp_getset = Lanes_getset,
};

static PyObject *md5lanes_engines(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (int e = ENGINE_AVX512; e >= ENGINE_SCALAR; e--) {
        if (!md5_engine_supported(e)) continue;
        PyObject *s = PyUnicode_FromString(ENGINE_NAMES[e]);
        if (s == NULL || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"engines", md5lanes_engines, METH_NOARGS, "engines() -> the engines this CPU runs, best first"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef md5lanes_module = {
    PyModuleDef_HEAD_INIT, "_md5lanes", "MD5 of many streams in SIMD lanes", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__md5lanes(void) {
    if (PyType_Ready(&LanesType) < 0) return NULL;
    PyObject *m = PyModule_Create(&md5lanes_module);
    if (m == NULL) return NULL;
    Py_INCREF(&LanesType);
    if (PyModule_AddObject(m, "Lanes", (PyObject *)&LanesType) < 0) {
        Py_DECREF(&LanesType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
