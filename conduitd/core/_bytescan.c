/* Whole-block byte scans for conduitd.core.bytescan (which documents them and holds the
 * pure-Python twins every function here is tested against).
 *
 * Each scan is one pass over the block with the GIL released.  On x86-64 (SSE2 is part of
 * the base instruction set) 64 bytes at a time become bit masks, one bit per byte, and the
 * questions are answered with bit operations on the masks; elsewhere a plain byte loop
 * gives the same answers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define BYTESCAN_SIMD 1
#else
#define BYTESCAN_SIMD 0
#endif

/* Offsets of every LF, as native int64s in a bytes object (numpy reads it without a copy). */
static PyObject *lf_offsets(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *start = view.buf, *end = start + view.len, *p;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    for (p = start; p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) count++;
    Py_END_ALLOW_THREADS
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (out != NULL) {
        int64_t *o = (int64_t *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        for (p = start; p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) *o++ = p - start;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return out;
}

#if BYTESCAN_SIMD
static inline uint64_t mask16(__m128i hits) { return (uint64_t)(uint16_t)_mm_movemask_epi8(hits); }

static inline __m128i either(__m128i v, char a, char b) {
    return _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(a)), _mm_cmpeq_epi8(v, _mm_set1_epi8(b)));
}

/* Bits of the 64 bytes at p: opening brackets and line breaks. */
static inline void bracket_masks(const unsigned char *p, uint64_t *opens, uint64_t *breaks) {
    uint64_t o = 0, b = 0;
    for (int j = 0; j < 4; j++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * j));
        o |= mask16(either(v, '{', '[')) << (16 * j);
        b |= mask16(either(v, '\n', '\r')) << (16 * j);
    }
    *opens = o;
    *breaks = b;
}

/* Bits of the 64 bytes at p: digits and points. */
static inline uint64_t digit_mask(const unsigned char *p) {
    uint64_t m = 0;
    for (int j = 0; j < 4; j++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * j));
        __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
        __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
        m |= mask16(_mm_or_si128(digit, _mm_cmpeq_epi8(v, _mm_set1_epi8('.')))) << (16 * j);
    }
    return m;
}
#endif

/* Whether some line (split at CR or LF) holds more than `limit` opening brackets. */
static int opens_over_impl(const unsigned char *p, Py_ssize_t n, Py_ssize_t limit) {
    Py_ssize_t i = 0, count = 0;
#if BYTESCAN_SIMD
    for (; i + 64 <= n; i += 64) {
        uint64_t opens, breaks;
        bracket_masks(p + i, &opens, &breaks);
        while (breaks) {
            int at = __builtin_ctzll(breaks);
            uint64_t before = (((uint64_t)2) << at) - 1; /* bits 0..at; all when at is 63 */
            count += __builtin_popcountll(opens & before);
            if (count > limit) return 1;
            count = 0;
            opens &= ~before;
            breaks &= breaks - 1;
        }
        count += __builtin_popcountll(opens);
        if (count > limit) return 1;
    }
#endif
    for (; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\n' || c == '\r') {
            count = 0;
        } else if ((c == '{' || c == '[') && ++count > limit) {
            return 1;
        }
    }
    return 0;
}

/* Whether the block holds `length` (>= 1) digits or points in a row. */
static int digit_run_impl(const unsigned char *p, Py_ssize_t n, Py_ssize_t length) {
    Py_ssize_t i = 0, run = 0;
#if BYTESCAN_SIMD
    for (; i + 64 <= n; i += 64) {
        uint64_t m = digit_mask(p + i);
        if (m == ~(uint64_t)0) {
            run += 64;
            if (run >= length) return 1;
            continue;
        }
        if (run + __builtin_ctzll(~m) >= length) return 1; /* the run carried in, and its end here */
        if (length <= 64) {
            /* bit k of r: bytes k .. k+have-1 are all digits (bits shifted in from the top are 0) */
            uint64_t r = m;
            Py_ssize_t have = 1;
            while (have * 2 <= length) {
                r &= r >> have;
                have *= 2;
            }
            if (have < length) r &= r >> (length - have);
            if (r) return 1;
        }
        run = __builtin_clzll(~m); /* the digits that end this chunk, carried out */
    }
#endif
    for (; i < n; i++) {
        unsigned char c = p[i];
        if ((c >= '0' && c <= '9') || c == '.') {
            if (++run >= length) return 1;
        } else {
            run = 0;
        }
    }
    return 0;
}

static PyObject *opens_over(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t limit;
    int found;
    if (!PyArg_ParseTuple(args, "y*n", &view, &limit)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    found = opens_over_impl(view.buf, view.len, limit);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

static PyObject *digit_run(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t length;
    int found;
    if (!PyArg_ParseTuple(args, "y*n", &view, &length)) return NULL;
    if (length < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "length must be at least 1");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    found = digit_run_impl(view.buf, view.len, length);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"lf_offsets", lf_offsets, METH_O, "Offsets of every LF in the block, as native int64s."},
    {"opens_over", opens_over, METH_VARARGS,
     "Whether some line (split at CR or LF) holds more than limit opening brackets."},
    {"digit_run", digit_run, METH_VARARGS, "Whether the block holds length digits or points in a row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "conduitd.core._bytescan", "Whole-block byte scans (see conduitd.core.bytescan).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bytescan(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "SIMD", BYTESCAN_SIMD) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
