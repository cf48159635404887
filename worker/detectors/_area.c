/* The CPU MTCNN's numpy stages that profiled slowest, compiled: the same values, bit for
 * bit, as the numpy code they replace (worker/detectors/onnx_mtcnn.py): the two area
 * resizes from a frame's summed-area table (area_resize, area_crops, about 3-4x faster on
 * one core), the copy of PNet's rerun windows into their line (pnet_line), PNet's threshold
 * scans (cells_above: the cells whose logit margin is above a threshold, compared in float32 as
 * numpy compares) and greedy NMS (nms). Optional: where this module is not built (no C
 * compiler at install), onnx_mtcnn runs its numpy code.
 *
 * The resizes:
 * An output pixel is the sum of its window [r0, r1) x [c0, c1) from four table pixels,
 * exact in int32, converted to float32 (exact: a sum is below 2^24 for any window a
 * table in int32 can hold) and divided by the window's area in float32 (correctly
 * rounded, as numpy's divide), then, when asked, facenet's input scaling
 * ((x - 127.5) * 0.0078125, the same two float32 steps as onnx_mtcnn.normalise).
 * No fast-math and no contraction (setup.py), so each step rounds as numpy's does.
 *
 * Every argument is checked (buffer format, sizes, every window edge inside the table)
 * before any pixel is read: bad input raises ValueError, it never reads out of bounds.
 * The GIL is released while the pixels are computed. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_SIZE 1024 /* output columns a crop may have (MTCNN's crops are 24 and 48) */

/* The buffer's format is one native item of this kind ('i': int32, 'q': int64, 'f': float32). */
static int is_format(const Py_buffer *b, char kind) {
    const char *f = b->format ? b->format : "B";
    if (*f == '@' || *f == '=' || (PY_LITTLE_ENDIAN && *f == '<')) f++; /* native byte order only */
    if (f[0] == '\0' || f[1] != '\0') return 0;
    switch (kind) {
    case 'i': return (f[0] == 'i' || f[0] == 'l') && b->itemsize == 4;
    case 'q': return (f[0] == 'l' || f[0] == 'q') && b->itemsize == 8;
    case 'f': return f[0] == 'f' && b->itemsize == 4;
    case 'd': return f[0] == 'd' && b->itemsize == 8;
    case 'B': return f[0] == 'B' && b->itemsize == 1;
    }
    return 0;
}

static int get(PyObject *obj, Py_buffer *b, char kind, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: a C-contiguous%s buffer is needed", name, writable ? ", writable" : "");
        return -1;
    }
    if (!is_format(b, kind)) {
        PyErr_Format(PyExc_ValueError, "%s: items of format '%c' are needed, not '%s' (%zd bytes)", name, kind,
                     b->format ? b->format : "B", b->itemsize);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* Each window [lo[i], hi[i]) is non-empty and inside [0, limit). */
static int check_edges(const int64_t *lo, const int64_t *hi, Py_ssize_t n, int64_t limit, const char *name) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (lo[i] < 0 || hi[i] <= lo[i] || hi[i] >= limit) {
            PyErr_Format(PyExc_ValueError, "%s: window %zd is [%lld, %lld), outside [0, %lld) or empty", name, i,
                         (long long)lo[i], (long long)hi[i], (long long)limit);
            return -1;
        }
    return 0;
}

/* One output row of windows [a, b) rows x [c0[j], c1[j]) columns, a and b the table's rows
 * (3 channels side by side): the sums first (the gathers), then the divisions in runs the
 * compiler vectorises. Output planar: channel k of column j at o[k * plane + j]. While it
 * gathers, the same columns of the next output row's table rows na and nb (NULL: none) are
 * prefetched: a 1080p frame's table is 25 MB, out of the caches when a strip is resized, and
 * the hardware's prefetchers stop at each 4 KB page of a row (on a 2-core Xeon, caches flushed,
 * the 1080p pyramid took 1.1-3.6 ms less in each of 8 alternating pairs, 12.0 -> 8.3 at the
 * quietest: docs/results/cpu/intel-f6-m207/prefetch_ab.txt). */
static void row(const int32_t *a, const int32_t *b, float height, const int64_t *c0, const int64_t *c1,
                const float *widths, Py_ssize_t nc, Py_ssize_t plane, float *o, int32_t *sums, float *area,
                int normalised, const int32_t *na, const int32_t *nb) {
    for (Py_ssize_t j = 0; j < nc; j++) {
        const int64_t x0 = 3 * c0[j], x1 = 3 * c1[j];
        if (na && (j & 3) == 0) {
            __builtin_prefetch(na + x1);
            __builtin_prefetch(nb + x1);
        }
        sums[j] = b[x1] - a[x1] - b[x0] + a[x0];
        sums[nc + j] = b[x1 + 1] - a[x1 + 1] - b[x0 + 1] + a[x0 + 1];
        sums[2 * nc + j] = b[x1 + 2] - a[x1 + 2] - b[x0 + 2] + a[x0 + 2];
    }
    for (Py_ssize_t j = 0; j < nc; j++) area[j] = height * widths[j];
    for (int k = 0; k < 3; k++) {
        const int32_t *s = sums + k * nc;
        float *ok = o + k * plane;
        if (normalised)
            for (Py_ssize_t j = 0; j < nc; j++) {
                float v = (float)s[j] / area[j];
                v -= 127.5f;
                ok[j] = v * 0.0078125f;
            }
        else
            for (Py_ssize_t j = 0; j < nc; j++) ok[j] = (float)s[j] / area[j];
    }
}

/* A block of output pixels, rows of windows [r0[i], r1[i]) by columns [c0[j], c1[j]) of the table
 * (wp columns), planar (nr x nc a channel) at o; scratch: sums 3 x nc, floats 2 x nc. */
static void block(const int32_t *table, int64_t wp, const int64_t *r0, const int64_t *r1, Py_ssize_t nr,
                  const int64_t *c0, const int64_t *c1, Py_ssize_t nc, float *o, int32_t *sums, float *floats,
                  int normalised) {
    for (Py_ssize_t j = 0; j < nc; j++) floats[j] = (float)(c1[j] - c0[j]);
    for (Py_ssize_t i = 0; i < nr; i++)
        row(table + r0[i] * wp * 3, table + r1[i] * wp * 3, (float)(r1[i] - r0[i]), c0, c1, floats, nc, nr * nc,
            o + i * nc, sums, floats + nc, normalised, i + 1 < nr ? table + r0[i + 1] * wp * 3 : NULL,
            i + 1 < nr ? table + r1[i + 1] * wp * 3 : NULL);
}

/* The table (H+1, W+1, 3) int32: its rows and columns, from its shape. */
static int table_shape(const Py_buffer *t, int64_t *hp, int64_t *wp) {
    if (t->ndim != 3 || t->shape[2] != 3 || t->shape[0] < 1 || t->shape[1] < 1) {
        PyErr_SetString(PyExc_ValueError, "table: a (H+1, W+1, 3) summed-area table is needed");
        return -1;
    }
    *hp = t->shape[0];
    *wp = t->shape[1];
    return 0;
}

/* Two blocks of scratch memory, or neither (MemoryError set). */
static int scratch(void **a, size_t a_bytes, void **b, size_t b_bytes) {
    *a = PyMem_RawMalloc(a_bytes ? a_bytes : 1);
    *b = PyMem_RawMalloc(b_bytes ? b_bytes : 1);
    if (*a && *b) return 0;
    PyMem_RawFree(*a);
    PyMem_RawFree(*b);
    *a = *b = NULL;
    PyErr_NoMemory();
    return -1;
}

static void release(Py_buffer *held, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&held[i]);
}

/* A call's n buffers, of these kinds, the last one writable (the output). On failure none is held. */
static int get_buffers(PyObject *const *objs, Py_buffer *held, const char *kinds, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (get(objs[i], &held[i], kinds[i], i == n - 1, names[i]) < 0) {
            release(held, i);
            return -1;
        }
    return 0;
}

/* An area resize's six buffers, in order: the table (int32), four edge arrays (int64), out (float32,
 * writable); and the table's rows and columns. On failure none is held. */
static int get_all(PyObject *const *objs, Py_buffer *held, const char *const *names, int64_t *hp, int64_t *wp) {
    if (get_buffers(objs, held, "iqqqqf", names, 6) < 0) return -1;
    if (table_shape(&held[0], hp, wp) < 0) {
        release(held, 6);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(resize_doc,
"resize(table, r0, r1, c0, c1, out, normalised)\n\n"
"Area-resize the frame of a summed-area table (H+1, W+1, 3) int32: output pixel (i, j) of\n"
"channel k, out[k * len(r0) * len(c0) + i * len(c0) + j], is the mean of rows [r0[i], r1[i])\n"
"and columns [c0[j], c1[j]) (int64 edges), scaled as facenet's input when normalised.\n"
"out: float32, 3 * len(r0) * len(c0) items (a (1, 3, rows, columns) array).");

static PyObject *resize(PyObject *self, PyObject *args) {
    PyObject *objs[6];
    int normalised;
    if (!PyArg_ParseTuple(args, "OOOOOOp:resize", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5],
                          &normalised))
        return NULL;
    static const char *const names[6] = {"table", "r0", "r1", "c0", "c1", "out"};
    Py_buffer b[6];
    int64_t hp, wp;
    if (get_all(objs, b, names, &hp, &wp) < 0) return NULL;
    Py_buffer *r0 = &b[1], *r1 = &b[2], *c0 = &b[3], *c1 = &b[4], *out = &b[5];
    PyObject *result = NULL;
    const Py_ssize_t nr = r0->len / 8, nc = c0->len / 8;
    if (r1->len != r0->len || c1->len != c0->len || out->len / 4 != 3 * nr * nc) {
        PyErr_SetString(PyExc_ValueError,
                        "resize: r0 / r1, c0 / c1 differ in length, or out is not 3 x rows x columns");
        goto done;
    }
    if (check_edges(r0->buf, r1->buf, nr, hp, "rows") < 0 || check_edges(c0->buf, c1->buf, nc, wp, "columns") < 0)
        goto done;
    int32_t *sums;
    float *floats;
    if (scratch((void **)&sums, sizeof(int32_t) * 3 * nc, (void **)&floats, sizeof(float) * 2 * nc) < 0) goto done;
    const int32_t *table = b[0].buf;
    Py_BEGIN_ALLOW_THREADS
    block(table, wp, r0->buf, r1->buf, nr, c0->buf, c1->buf, nc, out->buf, sums, floats, normalised);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(sums);
    PyMem_RawFree(floats);
    result = Py_NewRef(Py_None);
done:
    release(b, 6);
    return result;
}

PyDoc_STRVAR(crops_doc,
"crops(table, ys0, ys1, xs0, xs1, size, out, normalised)\n\n"
"Area-resized crops of the frame of a summed-area table (H+1, W+1, 3) int32: crop n's output\n"
"pixel (i, j) is the mean of rows [ys0[n, i], ys1[n, i]) and columns [xs0[n, j], xs1[n, j])\n"
"(int64 edges, n x size each), scaled as facenet's input when normalised.\n"
"out: float32, n * 3 * size * size items (an (n, 3, size, size) array).");

static PyObject *crops(PyObject *self, PyObject *args) {
    PyObject *objs[6], *out_obj;
    Py_ssize_t size;
    int normalised;
    if (!PyArg_ParseTuple(args, "OOOOOnOp:crops", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &size, &out_obj,
                          &normalised))
        return NULL;
    if (size < 1 || size > MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "crops: size %zd is outside [1, %d]", size, MAX_SIZE);
        return NULL;
    }
    objs[5] = out_obj;
    static const char *const names[6] = {"table", "ys0", "ys1", "xs0", "xs1", "out"};
    Py_buffer b[6];
    int64_t hp, wp;
    if (get_all(objs, b, names, &hp, &wp) < 0) return NULL;
    Py_buffer *ys0 = &b[1], *ys1 = &b[2], *xs0 = &b[3], *xs1 = &b[4], *out = &b[5];
    PyObject *result = NULL;
    const Py_ssize_t edges = ys0->len / 8, n = edges / size;
    if (edges % size || ys1->len != ys0->len || xs0->len != ys0->len || xs1->len != ys0->len ||
        out->len / 4 != 3 * edges * size) {
        PyErr_SetString(PyExc_ValueError, "crops: the edges are not n x size each, or out is not n x 3 x size x size");
        goto done;
    }
    if (check_edges(ys0->buf, ys1->buf, edges, hp, "rows") < 0 ||
        check_edges(xs0->buf, xs1->buf, edges, wp, "columns") < 0)
        goto done;
    const int32_t *table = b[0].buf;
    const int64_t *Y0 = ys0->buf, *Y1 = ys1->buf, *X0 = xs0->buf, *X1 = xs1->buf;
    float *o = out->buf;
    Py_BEGIN_ALLOW_THREADS
    int32_t sums[3 * MAX_SIZE];
    float floats[2 * MAX_SIZE];
    for (Py_ssize_t q = 0; q < n; q++)
        block(table, wp, Y0 + q * size, Y1 + q * size, size, X0 + q * size, X1 + q * size, size,
              o + q * 3 * size * size, sums, floats, normalised);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(b, 6);
    return result;
}

PyDoc_STRVAR(line_doc,
"line(pixels, top, left, widths, out)\n\n"
"PNet's windows of some cells of a strip as one line 12 rows high (worker/detectors/onnx_mtcnn.py:\n"
"pnet_line): segment s is rows [top[s], top[s] + 12) and columns [left[s], left[s] + widths[s]) of\n"
"pixels (3, rows, columns) float32, copied side by side into out (3, 12, sum(widths)) float32.\n"
"top, left, widths: int64, one per segment.");

static PyObject *line(PyObject *self, PyObject *args) {
    PyObject *objs[5];
    if (!PyArg_ParseTuple(args, "OOOOO:line", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4])) return NULL;
    static const char *const names[5] = {"pixels", "top", "left", "widths", "out"};
    Py_buffer b[5];
    if (get_buffers(objs, b, "fqqqf", names, 5) < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[1].len / 8;
    if (b[0].ndim != 3 || b[0].shape[0] != 3 || b[2].len != b[1].len || b[3].len != b[1].len) {
        PyErr_SetString(PyExc_ValueError,
                        "line: pixels must be (3, rows, columns), and top / left / widths one per segment");
        goto done;
    }
    const int64_t rows = b[0].shape[1], cols = b[0].shape[2];
    const int64_t *top = b[1].buf, *left = b[2].buf, *widths = b[3].buf;
    int64_t total = 0;
    for (Py_ssize_t s = 0; s < n; s++) {
        if (top[s] < 0 || top[s] + 12 > rows || left[s] < 0 || widths[s] < 1 || left[s] + widths[s] > cols) {
            PyErr_Format(PyExc_ValueError, "line: segment %zd (rows from %lld, columns [%lld, %lld)) is outside the "
                         "strip's %lld x %lld", s, (long long)top[s], (long long)left[s],
                         (long long)(left[s] + widths[s]), (long long)rows, (long long)cols);
            goto done;
        }
        total += widths[s];
    }
    if (b[4].len / 4 != 3 * 12 * total) {
        PyErr_SetString(PyExc_ValueError, "line: out is not 3 x 12 x the segments' widths");
        goto done;
    }
    const float *pixels = b[0].buf;
    float *o = b[4].buf;
    Py_BEGIN_ALLOW_THREADS
    int64_t at = 0;
    for (Py_ssize_t s = 0; s < n; s++) {
        for (int c = 0; c < 3; c++)
            for (int r = 0; r < 12; r++)
                memcpy(o + (c * 12 + r) * total + at, pixels + (c * rows + top[s] + r) * cols + left[s],
                       sizeof(float) * widths[s]);
        at += widths[s];
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(b, 5);
    return result;
}

/* numpy's minimum, maximum and clip(min=0): a NaN comes through, as there */
static inline double mn(double a, double b) { return a != a ? a : b != b ? b : a < b ? a : b; }
static inline double mx(double a, double b) { return a != a ? a : b != b ? b : a > b ? a : b; }
static inline double clip0(double v) { return v < 0 ? 0 : v; }

PyDoc_STRVAR(nms_doc,
"nms(boxes, order, by_x, groups, threshold, plus, by_min, keep)\n\n"
"Greedy NMS (worker/detectors/onnx_mtcnn.py: nms): boxes (n, 4) float64 x1 y1 x2 y2, visited in order\n"
"(int64, best first); a box is kept unless a kept box before it in order, of the same group (int64),\n"
"overlaps it by more than threshold (>= 0): inter / union, or inter / the smaller area when by_min,\n"
"areas and intersections with plus added to each side. by_x: the boxes sorted by group, then x1 (NaN\n"
"last), which bounds the boxes a kept one can overlap. keep: n uint8, written 1 for a kept box, else 0.");

/* The first position in by_x[lo, hi) whose box's x1 is not below v (x1 ascending there). */
static Py_ssize_t lower_bound(const int64_t *by_x, const double *box, Py_ssize_t lo, Py_ssize_t hi, double v) {
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (box[4 * by_x[mid]] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static PyObject *nms(PyObject *self, PyObject *args) {
    PyObject *objs[5];
    double threshold, plus;
    int by_min;
    if (!PyArg_ParseTuple(args, "OOOOddpO:nms", &objs[0], &objs[1], &objs[2], &objs[3], &threshold, &plus, &by_min,
                          &objs[4]))
        return NULL;
    if (!(threshold >= 0)) {
        PyErr_SetString(PyExc_ValueError, "nms: the threshold must be >= 0");
        return NULL;
    }
    static const char *const names[5] = {"boxes", "order", "by_x", "groups", "keep"};
    Py_buffer b[5];
    if (get_buffers(objs, b, "dqqqB", names, 5) < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[1].len / 8;
    if (b[0].len != 4 * 8 * n || b[2].len != b[1].len || b[3].len != b[1].len || b[4].len != n) {
        PyErr_SetString(PyExc_ValueError, "nms: boxes must be (n, 4), and order, by_x, groups and keep n each");
        goto done;
    }
    const int64_t *order = b[1].buf, *by_x = b[2].buf, *group = b[3].buf;
    const double *box = b[0].buf;
    unsigned char *keep = b[4].buf;
    for (int pass = 0; pass < 2; pass++) { /* order and by_x: permutations of the boxes */
        const int64_t *perm = pass ? by_x : order;
        memset(keep, 0, n);
        for (Py_ssize_t a = 0; a < n; a++) {
            if (perm[a] < 0 || perm[a] >= n || keep[perm[a]]) {
                PyErr_Format(PyExc_ValueError, "nms: %s is not a permutation of the boxes", names[1 + pass]);
                goto done;
            }
            keep[perm[a]] = 1;
        }
    }
    for (Py_ssize_t c = 1; c < n; c++) { /* by_x: by group, then x1 ascending with NaN last */
        const int64_t i = by_x[c - 1], j = by_x[c];
        const double xi = box[4 * i], xj = box[4 * j];
        if (group[j] < group[i] || (group[j] == group[i] && (xi != xi ? xj == xj : xj < xi))) {
            PyErr_SetString(PyExc_ValueError, "nms: by_x is not sorted by group, then x1");
            goto done;
        }
    }
    /* per box: its rank in order, and the part of by_x that holds its group's boxes with an x1 (seg_lo, seg_hi) */
    int64_t *rank;
    double *area;
    if (scratch((void **)&rank, sizeof(int64_t) * 3 * n, (void **)&area, sizeof(double) * 2 * n) < 0) goto done;
    int64_t *seg_lo = rank + n, *seg_hi = rank + 2 * n;
    double *widest = area + n; /* per box: the widest box of its group */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t a = 0; a < n; a++) rank[order[a]] = a;
    for (Py_ssize_t i = 0; i < n; i++)
        area[i] = (box[4 * i + 2] - box[4 * i] + plus) * (box[4 * i + 3] - box[4 * i + 1] + plus);
    for (Py_ssize_t start = 0; start < n;) {
        Py_ssize_t stop = start, with_x = start;
        double w = -INFINITY;
        while (stop < n && group[by_x[stop]] == group[by_x[start]]) {
            const double *p = box + 4 * by_x[stop];
            if (p[0] == p[0]) with_x = stop + 1; /* NaN x1 sorts last: they overlap nothing */
            if (p[2] - p[0] > w) w = p[2] - p[0];
            stop++;
        }
        for (Py_ssize_t c = start; c < stop; c++) {
            seg_lo[by_x[c]] = start;
            seg_hi[by_x[c]] = with_x;
            widest[by_x[c]] = w;
        }
        start = stop;
    }
    memset(keep, 1, n); /* kept unless suppressed below */
    for (Py_ssize_t a = 0; a < n; a++) {
        const int64_t i = order[a];
        const double *p = box + 4 * i;
        if (!keep[i] || p[0] != p[0]) continue;
        /* a box j overlaps i in x only if x1_j > x1_i - widest - plus and x1_j < x2_i + plus: those bounds
         * widened by one (pixel coordinates), so rounding here never leaves out a box the test below keeps */
        Py_ssize_t lo = lower_bound(by_x, box, seg_lo[i], seg_hi[i], p[0] - widest[i] - plus - 1.0);
        const Py_ssize_t hi = p[2] == p[2] ? lower_bound(by_x, box, lo, seg_hi[i], p[2] + plus + 1.0) : lo;
        for (Py_ssize_t c = lo; c < hi; c++) {
            const int64_t j = by_x[c];
            if (rank[j] <= a || !keep[j]) continue;
            const double *q = box + 4 * j;
            /* the same float64 steps as the numpy code: IEEE, no contraction (setup.py) */
            double iw = mn(p[2], q[2]) - mx(p[0], q[0]) + plus;
            double ih = mn(p[3], q[3]) - mx(p[1], q[1]) + plus;
            double inter = clip0(iw) * clip0(ih);
            double overlap = inter / (by_min ? mn(area[i], area[j]) : area[i] + area[j] - inter);
            if (overlap > threshold) keep[j] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(rank);
    PyMem_RawFree(area);
    result = Py_NewRef(Py_None);
done:
    release(b, 5);
    return result;
}

PyDoc_STRVAR(above_doc,
"above(l0, l1, threshold, strict, out) -> n\n\n"
"The cells of two planes (rows, columns) float32 whose difference l1 - l0 (float32) is above\n"
"threshold (rounded to float32 first; > when strict, else >=), in row-major order (as numpy's\n"
"nonzero): their rows in out[0, :n] and columns in out[1, :n]. out: (2, rows * columns) int64.\n"
"A NaN difference is never above.");

/* d above t: d > t when strict, else d >= t (a NaN d never) */
static inline int is_above(float d, float t, int strict) { return strict ? d > t : d >= t; }

static PyObject *above(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    double threshold;
    int strict;
    if (!PyArg_ParseTuple(args, "OOdpO:above", &objs[0], &objs[1], &threshold, &strict, &objs[2])) return NULL;
    static const char *const names[3] = {"l0", "l1", "out"};
    Py_buffer b[3];
    if (get_buffers(objs, b, "ffq", names, 3) < 0) return NULL;
    PyObject *result = NULL;
    if (b[0].ndim != 2 || b[1].ndim != 2 || b[1].shape[0] != b[0].shape[0] || b[1].shape[1] != b[0].shape[1]) {
        PyErr_SetString(PyExc_ValueError, "above: l0 and l1 must be planes (rows, columns) of one shape");
        goto done;
    }
    const Py_ssize_t rows = b[0].shape[0], cols = b[0].shape[1], cells = rows * cols;
    if (b[2].len / 8 != 2 * cells) {
        PyErr_SetString(PyExc_ValueError, "above: out must hold 2 x rows x columns int64");
        goto done;
    }
    const float t = (float)threshold, *l0 = b[0].buf, *l1 = b[1].buf;
    int64_t *ys = b[2].buf, *xs = ys + cells;
    Py_ssize_t n = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < rows; y++) {
        const float *a = l0 + y * cols, *c = l1 + y * cols;
        for (Py_ssize_t x0 = 0; x0 < cols; x0 += 16) {
            const Py_ssize_t x1 = x0 + 16 < cols ? x0 + 16 : cols;
            int any = 0; /* a branch-free pass over 16 cells first (vectorised): few cells are ever above */
            for (Py_ssize_t x = x0; x < x1; x++) any |= is_above(c[x] - a[x], t, strict);
            if (!any) continue;
            for (Py_ssize_t x = x0; x < x1; x++)
                if (is_above(c[x] - a[x], t, strict)) {
                    ys[n] = y;
                    xs[n++] = x;
                }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(n);
done:
    release(b, 3);
    return result;
}

static PyMethodDef methods[] = {
    {"resize", resize, METH_VARARGS, resize_doc},
    {"crops", crops, METH_VARARGS, crops_doc},
    {"line", line, METH_VARARGS, line_doc},
    {"nms", nms, METH_VARARGS, nms_doc},
    {"above", above, METH_VARARGS, above_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_area",
    "The CPU MTCNN's area resizes from a summed-area table, compiled (see worker/detectors/onnx_mtcnn.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__area(void) { return PyModule_Create(&module); }
