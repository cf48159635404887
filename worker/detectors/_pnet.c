/* PNet's first layers, compiled for CPUs with AVX2 and FMA: the 3x3 convolution of the
 * three input channels, its PReLU and the 2x2 max pool after it (ceil mode), in one pass.
 *
 * Why: OpenVINO's kernels run that first convolution (three input channels, ten output
 * channels) at a fraction of the rate of the layers after it: on a Zen 4 capped to AVX2 it
 * took 1.77 of PNet's 5.35 ms on a 217x385 scale for 13% of its multiply-adds (and on AVX2-only
 * CPUs PNet runs in fp32 over the whole pyramid, no bf16 screen). Here eight neighbouring
 * outputs of one row share each input load, each of the ten channels keeps its sums in a
 * register, and the weights wait pre-broadcast in memory: one fused multiply-add a weight and
 * eight outputs, about the core's peak.
 *
 * The values are fp32's, not bit for bit OpenVINO's: each output sums its 27 products in
 * another order (onnx_mtcnn.SplitPNet's tests bound the difference). The rest of PNet runs on
 * OpenVINO from this layer's output.
 *
 * Every argument is checked before any pixel is read: bad input raises ValueError, it never
 * reads or writes out of bounds. The GIL is released while the pixels are computed. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CHANNELS 10 /* PNet's first convolution's output channels, each one register of sums */
#define TAPS 27         /* 3 input channels x 3 x 3 */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86 1
#include <immintrin.h>
#else
#define HAVE_X86 0
#endif

static int cpu_ok(void) {
#if HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#if HAVE_X86
#define GROUP 5 /* channels a pass: GROUP x BLOCKS registers of sums, and the loads they share */

/* k stays in a register: each weight is loaded once for both blocks (the compiler would fold it
 * into both multiply-adds, a load each, and the loads, not the multiply-adds, would bound the loop) */
#define KEEP(k) __asm__("" : "+x"(k))

/* PReLU of the sums s of channel o, stored at dst */
#define STORE(s, o, dst)                                                                                    \
    _mm256_storeu_ps(dst, _mm256_blendv_ps(s, _mm256_mul_ps(s, _mm256_set1_ps(slope[o])), \
                                           _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_LT_OQ)))

/* Output columns [x, x + 16) of channels [o0, o0 + 5) of row y, PReLU applied, into row[o * wo + x]:
 * ten registers of sums; each input load serves five channels, each pre-broadcast weight two
 * blocks of eight columns. off: the 27 taps' offsets from the window's top left input. */
__attribute__((target("avx2,fma"))) static void
conv16(const float *src, const int64_t *off, int o0, const float *wb, const float *bias, const float *slope,
       float *row, int64_t wo) {
    __m256 p0 = _mm256_set1_ps(bias[o0]), p1 = _mm256_set1_ps(bias[o0 + 1]), p2 = _mm256_set1_ps(bias[o0 + 2]),
           p3 = _mm256_set1_ps(bias[o0 + 3]), p4 = _mm256_set1_ps(bias[o0 + 4]);
    __m256 q0 = p0, q1 = p1, q2 = p2, q3 = p3, q4 = p4;
    for (int t = 0; t < TAPS; t++) {
        const float *s = src + off[t], *wt = wb + ((size_t)t * CHANNELS + o0) * 8;
        const __m256 v0 = _mm256_loadu_ps(s), v1 = _mm256_loadu_ps(s + 8);
        __m256 k;
        k = _mm256_load_ps(wt); KEEP(k); p0 = _mm256_fmadd_ps(v0, k, p0); q0 = _mm256_fmadd_ps(v1, k, q0);
        k = _mm256_load_ps(wt + 8); KEEP(k); p1 = _mm256_fmadd_ps(v0, k, p1); q1 = _mm256_fmadd_ps(v1, k, q1);
        k = _mm256_load_ps(wt + 16); KEEP(k); p2 = _mm256_fmadd_ps(v0, k, p2); q2 = _mm256_fmadd_ps(v1, k, q2);
        k = _mm256_load_ps(wt + 24); KEEP(k); p3 = _mm256_fmadd_ps(v0, k, p3); q3 = _mm256_fmadd_ps(v1, k, q3);
        k = _mm256_load_ps(wt + 32); KEEP(k); p4 = _mm256_fmadd_ps(v0, k, p4); q4 = _mm256_fmadd_ps(v1, k, q4);
    }
    float *d = row + (int64_t)o0 * wo;
    STORE(p0, o0, d); STORE(q0, o0, d + 8); d += wo;
    STORE(p1, o0 + 1, d); STORE(q1, o0 + 1, d + 8); d += wo;
    STORE(p2, o0 + 2, d); STORE(q2, o0 + 2, d + 8); d += wo;
    STORE(p3, o0 + 3, d); STORE(q3, o0 + 3, d + 8); d += wo;
    STORE(p4, o0 + 4, d); STORE(q4, o0 + 4, d + 8);
}

/* conv16 for eight columns */
__attribute__((target("avx2,fma"))) static void
conv8(const float *src, const int64_t *off, int o0, const float *wb, const float *bias, const float *slope,
      float *row, int64_t wo) {
    __m256 p0 = _mm256_set1_ps(bias[o0]), p1 = _mm256_set1_ps(bias[o0 + 1]), p2 = _mm256_set1_ps(bias[o0 + 2]),
           p3 = _mm256_set1_ps(bias[o0 + 3]), p4 = _mm256_set1_ps(bias[o0 + 4]);
    for (int t = 0; t < TAPS; t++) {
        const float *wt = wb + ((size_t)t * CHANNELS + o0) * 8;
        const __m256 v0 = _mm256_loadu_ps(src + off[t]);
        p0 = _mm256_fmadd_ps(v0, _mm256_load_ps(wt), p0);
        p1 = _mm256_fmadd_ps(v0, _mm256_load_ps(wt + 8), p1);
        p2 = _mm256_fmadd_ps(v0, _mm256_load_ps(wt + 16), p2);
        p3 = _mm256_fmadd_ps(v0, _mm256_load_ps(wt + 24), p3);
        p4 = _mm256_fmadd_ps(v0, _mm256_load_ps(wt + 32), p4);
    }
    float *d = row + (int64_t)o0 * wo;
    STORE(p0, o0, d); d += wo;
    STORE(p1, o0 + 1, d); d += wo;
    STORE(p2, o0 + 2, d); d += wo;
    STORE(p3, o0 + 3, d); d += wo;
    STORE(p4, o0 + 4, d);
}

/* One output row y (before the pool) of every channel, PReLU applied, into row[o * wo + x]. */
__attribute__((target("avx2,fma"))) static void conv_row(const float *in, int64_t h, int64_t w, int64_t y,
                                                          const float *wb, const float *weight,
                                                          const float *bias, const float *slope, float *row) {
    const int64_t wo = w - 2, plane = h * w;
    int64_t off[TAPS];
    for (int c = 0, t = 0; c < 3; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) off[t++] = c * plane + ky * w + kx;
    const float *top = in + y * w;
    int64_t x = 0;
    for (; x + 16 <= wo; x += 16)
        for (int o0 = 0; o0 < CHANNELS; o0 += GROUP) conv16(top + x, off, o0, wb, bias, slope, row + x, wo);
    for (; x + 8 <= wo; x += 8)
        for (int o0 = 0; o0 < CHANNELS; o0 += GROUP) conv8(top + x, off, o0, wb, bias, slope, row + x, wo);
    if (x < wo && wo >= 8) { /* the last columns: the last eight again, the same values where they overlap */
        for (int o0 = 0; o0 < CHANNELS; o0 += GROUP) conv8(top + wo - 8, off, o0, wb, bias, slope, row + wo - 8, wo);
        x = wo;
    }
    for (; x < wo; x++) /* the last columns, fewer than eight */
        for (int o = 0; o < CHANNELS; o++) {
            float s = bias[o];
            const float *k = weight + o * TAPS;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) s = fmaf(in[c * plane + (y + ky) * w + x + kx], k[(c * 3 + ky) * 3 + kx], s);
            row[o * wo + x] = s < 0.0f ? s * slope[o] : s;
        }
}

/* One image: in (3, h, w) -> out (CHANNELS, hp, wp). rows: 2 x CHANNELS x (w - 2) floats. */
__attribute__((target("avx2,fma"))) static void image(const float *in, int64_t h, int64_t w,
                                                       const float *wb, const float *weight, const float *bias,
                                                       const float *slope, float *out, float *rows) {
    const int64_t ho = h - 2, wo = w - 2, hp = (ho + 1) / 2, wp = (wo + 1) / 2;
    float *a = rows, *b = rows + (size_t)CHANNELS * wo;
    for (int64_t py = 0; py < hp; py++) {
        conv_row(in, h, w, 2 * py, wb, weight, bias, slope, a);
        if (2 * py + 1 < ho) { /* the pool's second row; a last odd row pools alone (ceil mode) */
            conv_row(in, h, w, 2 * py + 1, wb, weight, bias, slope, b);
            for (int64_t i = 0; i < CHANNELS * wo; i++) a[i] = a[i] > b[i] ? a[i] : b[i];
        }
        for (int o = 0; o < CHANNELS; o++) {
            const float *r = a + o * wo;
            float *dst = out + ((size_t)o * hp + py) * wp;
            int64_t px = 0;
            for (; 2 * px + 1 < wo; px++) dst[px] = r[2 * px] > r[2 * px + 1] ? r[2 * px] : r[2 * px + 1];
            if (px < wp) dst[px] = r[2 * px]; /* a last odd column pools alone */
        }
    }
}
#endif

static int get(PyObject *obj, Py_buffer *b, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: a C-contiguous%s float32 array is needed", name,
                     writable ? ", writable" : "");
        return -1;
    }
    const char *f = b->format ? b->format : "B";
    if (*f == '@' || *f == '=' || (PY_LITTLE_ENDIAN && *f == '<')) f++;
    if (f[0] != 'f' || f[1] != '\0' || b->itemsize != 4) {
        PyErr_Format(PyExc_ValueError, "%s: float32 items are needed, not '%s'", name, b->format ? b->format : "B");
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(head_doc,
"head(x, weight, bias, slope, out)\n\n"
"PNet's first layers on images x (n, 3, h, w) float32, h and w at least 3: the valid 3x3\n"
"convolution with weight (10, 3, 3, 3) and bias (10,), the PReLU with slope (10,), then\n"
"the 2x2 max pool of stride 2 in ceil mode, into out (n, 10, ceil((h - 2) / 2), ceil((w - 2) / 2)).\n"
"Needs AVX2 and FMA (available()); raises RuntimeError without them.");

static PyObject *head(PyObject *self, PyObject *args) {
    PyObject *objs[5];
    if (!PyArg_ParseTuple(args, "OOOOO:head", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4])) return NULL;
    static const char *const names[5] = {"x", "weight", "bias", "slope", "out"};
    Py_buffer b[5];
    int held = 0;
    PyObject *result = NULL;
    for (; held < 5; held++)
        if (get(objs[held], &b[held], held == 4, names[held]) < 0) goto done;
    if (!cpu_ok()) {
        PyErr_SetString(PyExc_RuntimeError, "head: this CPU lacks AVX2 or FMA");
        goto done;
    }
    Py_buffer *x = &b[0], *wt = &b[1], *out = &b[4];
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] < 3 || x->shape[3] < 3) {
        PyErr_SetString(PyExc_ValueError, "head: x must be (n, 3, h, w) with h, w >= 3");
        goto done;
    }
    if (wt->ndim != 4 || wt->shape[0] != CHANNELS || wt->shape[1] != 3 || wt->shape[2] != 3 || wt->shape[3] != 3) {
        PyErr_Format(PyExc_ValueError, "head: weight must be (%d, 3, 3, 3)", CHANNELS);
        goto done;
    }
    const int64_t n = x->shape[0], h = x->shape[2], w = x->shape[3];
    const int channels = CHANNELS;
    const int64_t ho = h - 2, wo = w - 2, hp = (ho + 1) / 2, wp = (wo + 1) / 2;
    if (b[2].len / 4 != channels || b[3].len / 4 != channels) {
        PyErr_SetString(PyExc_ValueError, "head: bias and slope must hold one value a channel");
        goto done;
    }
    if (out->ndim != 4 || out->shape[0] != n || out->shape[1] != channels || out->shape[2] != hp ||
        out->shape[3] != wp) {
        PyErr_Format(PyExc_ValueError, "head: out must be (%lld, %d, %lld, %lld)", (long long)n, channels,
                     (long long)hp, (long long)wp);
        goto done;
    }
#if HAVE_X86
    /* the weights pre-broadcast, tap by tap: wb[(t * c + o) * 8 + lane] = weight[o, t] */
    float *wb = PyMem_RawMalloc(sizeof(float) * TAPS * channels * 8 + 32);
    float *rows = PyMem_RawMalloc(sizeof(float) * 2 * (size_t)channels * wo);
    if (!wb || !rows) {
        PyMem_RawFree(wb);
        PyMem_RawFree(rows);
        PyErr_NoMemory();
        goto done;
    }
    float *wa = (float *)(((uintptr_t)wb + 31) & ~(uintptr_t)31); /* aligned for _mm256_load_ps */
    const float *weight = wt->buf;
    for (int t = 0; t < TAPS; t++)
        for (int o = 0; o < channels; o++)
            for (int l = 0; l < 8; l++) wa[(t * channels + o) * 8 + l] = weight[o * TAPS + t];
    const float *in = x->buf, *bias = b[2].buf, *slope = b[3].buf;
    float *dst = out->buf;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < n; i++)
        image(in + i * 3 * h * w, h, w, wa, weight, bias, slope, dst + i * channels * hp * wp, rows);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(wb);
    PyMem_RawFree(rows);
    result = Py_NewRef(Py_None);
#endif
done:
    for (int i = 0; i < held; i++) PyBuffer_Release(&b[i]);
    return result;
}

PyDoc_STRVAR(available_doc, "available()\n\nWhether this CPU has AVX2 and FMA, which head() needs.");

static PyObject *available(PyObject *self, PyObject *unused) { return PyBool_FromLong(cpu_ok()); }

static PyMethodDef methods[] = {
    {"head", head, METH_VARARGS, head_doc},
    {"available", available, METH_NOARGS, available_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pnet",
    "PNet's first convolution, PReLU and max pool, compiled for AVX2 and FMA (see onnx_mtcnn.SplitPNet).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__pnet(void) { return PyModule_Create(&module); }
