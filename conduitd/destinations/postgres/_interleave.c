/* Row-by-row interleaving of column parts into binary COPY tuples, for copy_binary (which
 * documents the parts and keeps the pure-Python assembly this is tested against).
 *
 * interleave(n, parts) -> bytes.  Each part is one of
 *   (0, pieces, lengths)         fixed: row i is the concatenation of row i of every piece,
 *                                cut to lengths[i] bytes (all of it when lengths is None); a
 *                                piece is (buffer, width, stride), row i at i * stride (stride 0:
 *                                the same bytes for every row)
 *   (1, data, starts, lengths)   variable: row i is data[starts[i] : starts[i] + lengths[i]]
 * starts and lengths are native int64 buffers of n values.  Every offset and length is checked
 * against its buffer before a byte is copied; the copying runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *buf;
    Py_ssize_t width, stride;
} Piece;

typedef struct {
    int kind; /* 0 fixed, 1 variable */
    Py_ssize_t first_piece, npieces, width;
    const int64_t *lengths, *starts;
    const uint8_t *data;
} Part;

typedef struct {
    Py_buffer *views; /* allocated once for every view the parts can need: never moved */
    Py_ssize_t nviews, capacity;
} Views;

static int hold(Views *views, PyObject *object, Py_buffer **out) {
    if (views->nviews == views->capacity) {
        PyErr_SetString(PyExc_SystemError, "interleave: more buffers than counted");
        return -1;
    }
    Py_buffer *view = &views->views[views->nviews];
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    views->nviews++;
    *out = view;
    return 0;
}

static void release(Views *views) {
    for (Py_ssize_t i = 0; i < views->nviews; i++) PyBuffer_Release(&views->views[i]);
    PyMem_Free(views->views);
}

static int int64s(Views *views, PyObject *object, Py_ssize_t n, const char *what, const int64_t **out) {
    Py_buffer *view;
    if (hold(views, object, &view) < 0) return -1;
    if (view->len < n * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes for %zd rows", what, view->len, n);
        return -1;
    }
    *out = view->buf;
    return 0;
}

/* memcpy, with the usual widths of binary COPY fields and prefixes as constants the compiler
 * turns into single moves (a call per field cost more than the copying). */
static inline void copy(uint8_t *to, const uint8_t *from, Py_ssize_t size) {
    switch (size) {
    case 1: memcpy(to, from, 1); break;
    case 2: memcpy(to, from, 2); break;
    case 4: memcpy(to, from, 4); break;
    case 8: memcpy(to, from, 8); break;
    case 12: memcpy(to, from, 12); break;
    case 16: memcpy(to, from, 16); break;
    default: memcpy(to, from, (size_t)size);
    }
}

static PyObject *interleave(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "nO!", &n, &PyList_Type, &list)) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must not be negative");
        return NULL;
    }
    Py_ssize_t nparts = PyList_GET_SIZE(list), npieces = 0;
    for (Py_ssize_t p = 0; p < nparts; p++) {
        PyObject *item = PyList_GET_ITEM(list, p);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3) {
            PyErr_SetString(PyExc_TypeError, "each part is a tuple (kind, ...)");
            return NULL;
        }
        if (PyLong_AsLong(PyTuple_GET_ITEM(item, 0)) == 0) {
            PyObject *pieces = PyTuple_GET_ITEM(item, 1);
            if (!PyTuple_Check(pieces)) {
                PyErr_SetString(PyExc_TypeError, "a fixed part's pieces are a tuple");
                return NULL;
            }
            npieces += PyTuple_GET_SIZE(pieces);
        }
    }
    if (PyErr_Occurred()) return NULL;
    /* at most: a view per piece, and three per part (lengths; or data, starts, lengths) */
    Views views = {PyMem_Calloc((size_t)(npieces + 3 * nparts + 1), sizeof(Py_buffer)), 0, npieces + 3 * nparts + 1};
    Part *parts = PyMem_Calloc((size_t)(nparts ? nparts : 1), sizeof(Part));
    Piece *pieces = PyMem_Calloc((size_t)(npieces ? npieces : 1), sizeof(Piece));
    PyObject *out = NULL;
    Py_ssize_t total = 0, piece_at = 0;
    int bad = 0;
    if (views.views == NULL || parts == NULL || pieces == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t p = 0; p < nparts; p++) {
        PyObject *item = PyList_GET_ITEM(list, p);
        Part *part = &parts[p];
        part->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        if (part->kind == 0) {
            PyObject *tuple = PyTuple_GET_ITEM(item, 1), *lengths = PyTuple_GET_ITEM(item, 2);
            part->first_piece = piece_at;
            part->npieces = PyTuple_GET_SIZE(tuple);
            for (Py_ssize_t k = 0; k < part->npieces; k++) {
                PyObject *spec = PyTuple_GET_ITEM(tuple, k);
                PyObject *buffer;
                Py_buffer *view;
                Piece *piece = &pieces[piece_at++];
                if (!PyArg_ParseTuple(spec, "Onn", &buffer, &piece->width, &piece->stride)) goto done;
                if (hold(&views, buffer, &view) < 0) goto done;
                if (piece->width < 0 || piece->stride < 0 ||
                    (n > 0 && (n - 1) * piece->stride + piece->width > view->len)) {
                    PyErr_SetString(PyExc_ValueError, "a piece is shorter than its rows");
                    goto done;
                }
                piece->buf = view->buf;
                part->width += piece->width;
            }
            if (lengths == Py_None) {
                total += n * part->width;
            } else {
                if (int64s(&views, lengths, n, "a fixed part's lengths", &part->lengths) < 0) goto done;
                for (Py_ssize_t i = 0; i < n; i++) {
                    if (part->lengths[i] < 0 || part->lengths[i] > part->width) bad = 1;
                    total += (Py_ssize_t)part->lengths[i];
                }
            }
        } else if (part->kind == 1 && PyTuple_GET_SIZE(item) == 4) {
            Py_buffer *data;
            if (hold(&views, PyTuple_GET_ITEM(item, 1), &data) < 0) goto done;
            if (int64s(&views, PyTuple_GET_ITEM(item, 2), n, "a variable part's starts", &part->starts) < 0) goto done;
            if (int64s(&views, PyTuple_GET_ITEM(item, 3), n, "a variable part's lengths", &part->lengths) < 0) goto done;
            part->data = data->buf;
            for (Py_ssize_t i = 0; i < n; i++) {
                int64_t start = part->starts[i], length = part->lengths[i];
                if (start < 0 || length < 0 || start > data->len || length > data->len - start) bad = 1;
                total += (Py_ssize_t)length;
            }
        } else {
            PyErr_SetString(PyExc_ValueError, "a part is (0, pieces, lengths) or (1, data, starts, lengths)");
            goto done;
        }
        if (bad) {
            PyErr_Format(PyExc_ValueError, "part %zd: a row's run lies outside its buffer", p);
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) goto done;
    uint8_t *to = (uint8_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t p = 0; p < nparts; p++) {
            const Part *part = &parts[p];
            if (part->kind == 1) {
                Py_ssize_t length = (Py_ssize_t)part->lengths[i];
                copy(to, part->data + part->starts[i], length);
                to += length;
                continue;
            }
            Py_ssize_t left = part->lengths ? (Py_ssize_t)part->lengths[i] : part->width;
            for (Py_ssize_t k = 0; k < part->npieces && left > 0; k++) {
                const Piece *piece = &pieces[part->first_piece + k];
                Py_ssize_t take = piece->width < left ? piece->width : left;
                copy(to, piece->buf + i * piece->stride, take);
                to += take;
                left -= take;
            }
        }
    }
    Py_END_ALLOW_THREADS
done:
    release(&views);
    PyMem_Free(parts);
    PyMem_Free(pieces);
    return out;
}

static PyMethodDef methods[] = {
    {"interleave", interleave, METH_VARARGS, "Binary COPY tuples from column parts (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "conduitd.destinations.postgres._interleave",
    "Row-by-row interleaving of binary COPY column parts (see copy_binary).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__interleave(void) { return PyModule_Create(&module); }
