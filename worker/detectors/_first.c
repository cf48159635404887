/* The MTCNN nets' first layers, compiled for CPUs with AVX2 and FMA: the 3x3 convolution of the
 * three input channels, its PReLU and the max pool after it (2x2 in PNet, 3x3 in RNet and ONet,
 * stride 2, ceil mode), in one pass (worker/detectors/first_layers.py).
 *
 * Why: OpenVINO's kernels run those first convolutions (three input channels) at a fraction of
 * the rate of the layers after them: on a Zen 4 capped to AVX2 PNet's took 1.77 of its 5.35 ms
 * on a 217x385 scale for 13% of its multiply-adds, and on a Zen 3 RNet's convolution and pool
 * took 3.9 of its 7.5 ms. Here eight neighbouring outputs in each of two rows share each input
 * load, a group of up to six channels keeps its sums in registers (twelve), and each weight is
 * broadcast from memory once for all sixteen outputs: about half the core's fp32 peak, PNet's
 * first layers 1.3-1.5x as fast as OpenVINO's (RNet's and ONet's about as fast: whether a CPU runs
 * them is measured there, worker/runtime.py).
 *
 * The values are fp32's, not bit for bit OpenVINO's: each output sums its 27 products in another
 * order (the tests bound the difference). The rest of each net runs on OpenVINO.
 *
 * Every argument is checked before any pixel is read: bad input raises ValueError, it never
 * reads or writes out of bounds. The GIL is released while the pixels are computed. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define MAX_CHANNELS 64 /* output channels (PNet 10, RNet 28, ONet 32) */
#define TAPS 27         /* 3 input channels x 3 x 3 */
#define PAD 8           /* floats after each channel's row of sums, -inf: a pool window cut short reads them */

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
/* k stays in a register: each weight is broadcast once for both rows (the compiler would fold it
 * into both multiply-adds, a load each, and the loads, not the multiply-adds, would bound the loop) */
#define KEEP(k) __asm__("" : "+x"(k))

/* Eight output columns of channels [o0, o0 + G) in each of two neighbouring rows, PReLU applied,
 * into dst0 / dst1 (+ o * ws): 2 x G registers of sums. src: the top row's window's top left
 * input, the other row's w further; off: the 27 taps' offsets from it; wb: the weights tap by tap,
 * wb[t * channels + o]. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
conv8x2(const float *src, int64_t w, const int64_t *off, int channels, int o0, const float *wb, const float *bias,
        const float *slope, float *dst0, float *dst1, int64_t ws, const int G) {
    __m256 acc[2][6];
    for (int o = 0; o < G; o++) acc[0][o] = acc[1][o] = _mm256_set1_ps(bias[o0 + o]);
    for (int t = 0; t < TAPS; t++) {
        const float *s = src + off[t], *wt = wb + (size_t)t * channels + o0;
        const __m256 v0 = _mm256_loadu_ps(s), v1 = _mm256_loadu_ps(s + w);
        for (int o = 0; o < G; o++) {
            __m256 k = _mm256_broadcast_ss(wt + o);
            KEEP(k);
            acc[0][o] = _mm256_fmadd_ps(v0, k, acc[0][o]);
            acc[1][o] = _mm256_fmadd_ps(v1, k, acc[1][o]);
        }
    }
    const __m256 zero = _mm256_setzero_ps();
    for (int o = 0; o < G; o++)
        for (int r = 0; r < 2; r++) {
            const __m256 a = acc[r][o], neg = _mm256_mul_ps(a, _mm256_set1_ps(slope[o0 + o]));
            _mm256_storeu_ps((r ? dst1 : dst0) + (int64_t)(o0 + o) * ws,
                             _mm256_blendv_ps(a, neg, _mm256_cmp_ps(a, zero, _CMP_LT_OQ)));
        }
}

/* conv8x2 for each group size G (1 to 6 channels), its loops unrolled, the sums in registers */
#define PAIR(G)                                                                                                   \
    __attribute__((target("avx2,fma"))) static void pair_##G(const float *src, int64_t w, const int64_t *off,      \
                                                              int channels, int o0, const float *wb,               \
                                                              const float *bias, const float *slope, float *dst0,  \
                                                              float *dst1, int64_t ws) {                           \
        conv8x2(src, w, off, channels, o0, wb, bias, slope, dst0, dst1, ws, G);                                    \
    }
PAIR(1) PAIR(2) PAIR(3) PAIR(4) PAIR(5) PAIR(6)

typedef void (*pair_fn)(const float *, int64_t, const int64_t *, int, int, const float *, const float *,
                        const float *, float *, float *, int64_t);

#define GROUP 6 /* channels a pass: 2 x 6 registers of sums, the two rows' inputs and a weight */

static const pair_fn pairs[GROUP + 1] = {NULL, pair_1, pair_2, pair_3, pair_4, pair_5, pair_6};

/* Output rows y and y + 1 (before the pool; y + 1 < h - 2) of every channel, PReLU applied, into
 * dst0 / dst1 [o * ws + x]: blocks of eight columns, the last eight again where the columns do not
 * divide by eight (the same values where they overlap); rows narrower than eight one column at a
 * time, the same sums in the same order. */
__attribute__((target("avx2,fma"))) static void conv_rows(const float *in, int64_t h, int64_t w, int64_t y,
                                                           int channels, const float *wb, const float *bias,
                                                           const float *slope, float *dst0,
                                                           float *dst1, int64_t ws) {
    const int64_t wo = w - 2, plane = h * w;
    int64_t off[TAPS];
    for (int c = 0, t = 0; c < 3; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) off[t++] = c * plane + ky * w + kx;
    const float *top = in + y * w;
    /* the channels in as few groups of at most GROUP as they fill, of sizes that differ by one at most
     * (32: 6, 6, 5, 5, 5, 5 rather than five of 6 and one of 2, whose loads would serve few sums) */
    const int groups = (channels + GROUP - 1) / GROUP;
    int size[(MAX_CHANNELS + GROUP - 1) / GROUP];
    for (int i = 0; i < groups; i++) size[i] = channels / groups + (i < channels % groups);
    if (wo >= 8) {
        for (int64_t x = 0; x < wo; x += 8) {
            const int64_t at = x + 8 <= wo ? x : wo - 8;
            for (int i = 0, o0 = 0; i < groups; o0 += size[i++])
                pairs[size[i]](top + at, w, off, channels, o0, wb, bias, slope, dst0 + at, dst1 + at, ws);
        }
        return;
    }
    for (int r = 0; r < 2; r++)
        for (int64_t x = 0; x < wo; x++)
            for (int o = 0; o < channels; o++) {
                float s = bias[o];
                for (int t = 0; t < TAPS; t++) s = fmaf(top[r * w + x + off[t]], wb[t * channels + o], s);
                (r ? dst1 : dst0)[o * ws + x] = s < 0.0f ? s * slope[o] : s;
            }
}

__attribute__((target("avx2,fma"))) static inline void max_into(float *m, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float c = a[i] > b[i] ? a[i] : b[i];
        m[i] = c;
    }
}

/* The even items of 16 floats at p: p[0], p[2], ..., p[14] */
__attribute__((target("avx2,fma"))) static inline __m256 evens(const float *p) {
    const __m256 s = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
}

__attribute__((target("avx2,fma"))) static inline __m256 odds(const float *p) {
    const __m256 s = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0xDD);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
}

/* One pooled row of one channel: dst[px] = max(row[2px .. 2px + k)) cut at wo; row holds -inf in
 * the PAD floats after wo, which a window cut short reads and never takes. At least eight outputs:
 * in blocks of eight, the last eight again where they do not divide by eight (the same values). */
__attribute__((target("avx2,fma"))) static void pool_row(const float *row, int64_t wo, int k, float *dst,
                                                          int64_t wp) {
    if (wp >= 8) {
        for (int64_t px = 0; px < wp; px += 8) {
            const int64_t at = px + 8 <= wp ? px : wp - 8;
            __m256 m = _mm256_max_ps(evens(row + 2 * at), odds(row + 2 * at));
            if (k == 3) m = _mm256_max_ps(m, evens(row + 2 * at + 2));
            _mm256_storeu_ps(dst + at, m);
        }
        return;
    }
    for (int64_t px = 0; px < wp; px++) {
        const int64_t x0 = 2 * px, x1 = x0 + k < wo ? x0 + k : wo;
        float best = row[x0];
        for (int64_t x = x0 + 1; x < x1; x++) best = row[x] > best ? row[x] : best;
        dst[px] = best;
    }
}

/* One image: in (3, h, w) -> out (channels, hp, wp), the pool k x k of stride 2 in ceil mode (a
 * window cut short at the last row or column takes what it covers). Rows are computed in pairs
 * (2py, 2py + 1); with k = 3 a pool row's third row is the next pair's first, computed once.
 * rows: 5 x channels x (w - 2 + PAD) floats, each row's PAD already -inf. */
__attribute__((target("avx2,fma"))) static void image(const float *in, int64_t h, int64_t w, int channels, int k,
                                                       const float *wb, const float *bias, const float *slope,
                                                       float *out, float *rows) {
    const int64_t ho = h - 2, wo = w - 2, hp = (ho - k + 1) / 2 + 1, wp = (wo - k + 1) / 2 + 1;
    const int64_t ws = wo + PAD, n = (int64_t)channels * ws; /* each channel's row of sums, then PAD of -inf */
    float *a0 = rows, *a1 = rows + n, *b0 = rows + 2 * n, *b1 = rows + 3 * n, *m = rows + 4 * n;
    /* a pair whose second row is past the last computes the last row twice (one row: it pools alone) */
#define PAIR_AT(y, d0, d1) conv_rows(in, h, w, (y) + 1 < ho ? (y) : (y) - 1, channels, wb, bias, slope,         \
                                     (y) + 1 < ho ? (d0) : (d1), (y) + 1 < ho ? (d1) : (d0), ws)
    PAIR_AT(0, a0, a1);
    for (int64_t py = 0; py < hp; py++) {
        const int64_t y = 2 * py;
        const int second = y + 1 < ho, third = k == 3 && y + 2 < ho;
        if (third) PAIR_AT(y + 2, b0, b1);
        if (second) max_into(m, a0, a1, n); else memcpy(m, a0, sizeof(float) * n);
        if (third) max_into(m, m, b0, n);
        for (int o = 0; o < channels; o++) pool_row(m + o * ws, wo, k, out + ((size_t)o * hp + py) * wp, wp);
        if (py + 1 < hp) {
            if (k == 3) { /* the next pair is computed: swap */
                float *t0 = a0, *t1 = a1;
                a0 = b0, a1 = b1, b0 = t0, b1 = t1;
            } else
                PAIR_AT(y + 2, a0, a1);
        }
    }
#undef PAIR_AT
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
"head(x, weight, bias, slope, pool, out)\n\n"
"An MTCNN net's first layers on images x (n, 3, h, w) float32: the valid 3x3 convolution with\n"
"weight (c, 3, 3, 3) and bias (c,), 1 <= c <= 64, the PReLU with slope (c,), then the pool x pool\n"
"max pool (pool 2 or 3) of stride 2 in ceil mode, into out (n, c, hp, wp), hp = (h - 1 - pool) // 2\n"
"+ 1 and wp likewise (h - 2 and w - 2 at least pool). Needs AVX2 and FMA (available()); raises\n"
"RuntimeError without them.");

static PyObject *head(PyObject *self, PyObject *args) {
    PyObject *objs[5], *pool;
    if (!PyArg_ParseTuple(args, "OOOOOO:head", &objs[0], &objs[1], &objs[2], &objs[3], &pool, &objs[4])) return NULL;
    int overflow = 0;
    const long k = PyLong_Check(pool) ? PyLong_AsLongAndOverflow(pool, &overflow) : -1;
    if (k == -1 && PyErr_Occurred()) return NULL;
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
    if (overflow || (k != 2 && k != 3)) {
        PyErr_Format(PyExc_ValueError, "head: the pool must be 2 or 3, not %R", pool);
        goto done;
    }
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] < k + 2 || x->shape[3] < k + 2) {
        PyErr_Format(PyExc_ValueError, "head: x must be (n, 3, h, w) with h, w >= %ld", k + 2);
        goto done;
    }
    if (wt->ndim != 4 || wt->shape[0] < 1 || wt->shape[0] > MAX_CHANNELS || wt->shape[1] != 3 || wt->shape[2] != 3 ||
        wt->shape[3] != 3) {
        PyErr_Format(PyExc_ValueError, "head: weight must be (c, 3, 3, 3) with 1 <= c <= %d", MAX_CHANNELS);
        goto done;
    }
    const int64_t n = x->shape[0], h = x->shape[2], w = x->shape[3];
    const int channels = (int)wt->shape[0];
    const int64_t ho = h - 2, wo = w - 2, hp = (ho - k + 1) / 2 + 1, wp = (wo - k + 1) / 2 + 1;
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
    if (n == 0) { /* nothing to compute: no scratch rows (sized by w, which an empty x does not bound) */
        result = Py_NewRef(Py_None);
        goto done;
    }
    if ((uint64_t)wo + PAD > SIZE_MAX / (sizeof(float) * 5 * (size_t)channels)) {
        PyErr_SetString(PyExc_ValueError, "head: x is too wide");
        goto done;
    }
#if HAVE_X86
    float *wb = PyMem_RawMalloc(sizeof(float) * TAPS * channels);
    float *rows = PyMem_RawMalloc(sizeof(float) * 5 * (size_t)channels * (wo + PAD));
    if (!wb || !rows) {
        PyMem_RawFree(wb);
        PyMem_RawFree(rows);
        PyErr_NoMemory();
        goto done;
    }
    const float *weight = wt->buf;
    for (int t = 0; t < TAPS; t++)
        for (int o = 0; o < channels; o++) wb[t * channels + o] = weight[o * TAPS + t];
    for (int64_t i = 0; i < 5 * (int64_t)channels; i++) /* the pads, never written by the convolution */
        for (int j = 0; j < PAD; j++) rows[i * (wo + PAD) + wo + j] = -INFINITY;
    const float *in = x->buf, *bias = b[2].buf, *slope = b[3].buf;
    float *dst = out->buf;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < n; i++)
        image(in + i * 3 * h * w, h, w, channels, k, wb, bias, slope, dst + i * channels * hp * wp, rows);
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
    PyModuleDef_HEAD_INIT, "_first",
    "The MTCNN nets' first convolution, PReLU and max pool, compiled for AVX2 and FMA "
    "(see worker/detectors/first_layers.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__first(void) { return PyModule_Create(&module); }
