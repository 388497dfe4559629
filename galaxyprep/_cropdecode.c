/* Decode only a window of a JPEG, at a DCT scale, straight into a caller's buffer.
 *
 * libjpeg-turbo can skip the IDCT, upsampling and colour conversion of the
 * columns left of and right of a window (jpeg_crop_scanline) and of the rows
 * above it (jpeg_skip_scanlines), and the rows below it are never decoded at
 * all (the decompression is aborted after the window's last row). A 200 px
 * centre crop of a 424 px image keeps a fifth of its pixels.
 *
 * Errors: libjpeg's error_exit would call exit(); here it formats the
 * message and longjmps back into decode_window, in C frames only (the GIL is
 * released and no Python frame is between the setjmp and the longjmp), which
 * raises ValueError. Warnings (corrupt data that libjpeg can get past) are
 * counted and returned, never printed.
 *
 * decode_resample does what a build worker does with a block of images in
 * one call without the GIL: each image's window is decoded and, row by row as
 * libjpeg hands them over, area-resampled horizontally while the row is in
 * the cache; the vertical pass, rounding and channel sums follow. The
 * arithmetic is kernels._resample_one's, in the same float32 operations in
 * the same order (no contraction into fused multiply-adds: setup.py passes
 * -ffp-contract=off), so the output is bit for bit the numba kernel's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct error_manager {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
    int warnings;
};

static void on_error(j_common_ptr cinfo)
{
    struct error_manager *err = (struct error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level)
{
    if (level < 0) /* a warning; trace messages (level >= 0) are ignored */
        ((struct error_manager *)cinfo->err)->warnings++;
}

/* One decompressor per thread, created on first use and reused: jpeg_abort_decompress returns it
 * to its idle state after every image, success or error, so an image pays for its own buffers
 * only, not for creating and destroying the library's memory manager and tables. */
struct decoder {
    int ready;
    struct jpeg_decompress_struct cinfo;
    struct error_manager err;
};
static __thread struct decoder tls;

/* An area resample's geometry (kernels.AreaPlan, in window coordinates), checked against the window. */
struct area {
    int sy, ty, tx, nruns, m_out; /* output rows, vertical taps, horizontal taps, x runs, output row length */
    int h_lo, h_hi;               /* the window rows the resample reads: [h_lo, h_hi) */
    const int64_t *y_first;       /* (sy,) */
    const float *y_weights;       /* (sy, ty) */
    const float *x_weights;       /* (tx, m_out) */
    const int64_t *x_runs;        /* (nruns, 3): m_start, m_end, offset into the flattened input row */
    float *line;                  /* scratch: one window row as float32 */
    int line_len;                 /* its length, w * 3 */
};

/* The two resample loops are compiled for AVX-512 (x86-64-v4), AVX2 and the baseline (SSE2), and the loader
 * picks one (GCC's target_clones): the SSE2 code of the vertical pass has no 32-bit multiply and took three
 * times as long. All give the same bits: IEEE float32 operations, no contraction. Only with glibc, whose
 * loader resolves the clones (ifunc); elsewhere the baseline code alone. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(CROPDECODE_BASELINE)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One decoded row into its float32 row of horizontal taps: _resample_one's first loop. The row is converted
 * to float32 once (a->line, w * 3 floats; exact) rather than once per tap. */
VECTOR_CLONES static void horizontal(const struct area *a, const unsigned char *restrict line,
                                     float *restrict row)
{
    /* Indices are ptrdiff_t, not int: Python's -fwrapv makes int arithmetic wrap, and GCC then cannot vectorize. */
    const ptrdiff_t m_out = a->m_out, tx = a->tx, n_in = a->line_len;
    float *restrict f = a->line;
    for (ptrdiff_t m = 0; m < n_in; m++)
        f[m] = (float)line[m];
    for (int r = 0; r < a->nruns; r++) {
        const ptrdiff_t m0 = (ptrdiff_t)a->x_runs[3 * r], m1 = (ptrdiff_t)a->x_runs[3 * r + 1];
        const float *restrict s = f + a->x_runs[3 * r + 2];
        if (tx == 2) {
            const float *restrict w0 = a->x_weights, *restrict w1 = a->x_weights + m_out;
            for (ptrdiff_t m = m0; m < m1; m++)
                row[m] = w0[m] * s[m] + w1[m] * s[m + 3];
        } else {
            for (ptrdiff_t m = m0; m < m1; m++) {
                float acc = 0.0f;
                for (ptrdiff_t k = 0; k < tx; k++)
                    acc += a->x_weights[k * m_out + m] * s[m + 3 * k];
                row[m] = acc;
            }
        }
    }
}

/* The vertical pass, rounding half up, and the per-channel sums and sums of squares (_resample_one's second
 * loop). `counts` is scratch of 2 * m_out int32. */
VECTOR_CLONES static void vertical(const struct area *a, const float *restrict rows, unsigned char *restrict out,
                                   double *restrict channel_sums, int32_t *restrict counts)
{
    const ptrdiff_t m_out = a->m_out, ty = a->ty;
    int32_t *restrict sums = counts, *restrict squares = counts + m_out;
    memset(counts, 0, sizeof(int32_t) * 2 * (size_t)m_out);
    for (ptrdiff_t i = 0; i < a->sy; i++) {
        const float *restrict p = rows + (a->y_first[i] - a->h_lo) * m_out;
        const float *restrict wy = a->y_weights + i * ty;
        unsigned char *restrict dst = out + i * m_out;
        if (ty == 2) {
            const float w0 = wy[0], w1 = wy[1];
            const float *restrict p1 = p + m_out;
            for (ptrdiff_t m = 0; m < m_out; m++) {
                float x = w0 * p[m] + w1 * p1[m] + 0.5f;
                int32_t v = (int32_t)(x < 255.0f ? x : 255.0f);
                dst[m] = (unsigned char)v;
                sums[m] += v;
                squares[m] += v * v;
            }
            continue;
        }
        for (ptrdiff_t m = 0; m < m_out; m++) {
            float acc = 0.0f;
            for (ptrdiff_t k = 0; k < ty; k++)
                acc += wy[k] * p[k * m_out + m];
            float x = acc + 0.5f;
            int32_t v = (int32_t)(x < 255.0f ? x : 255.0f);
            dst[m] = (unsigned char)v;
            sums[m] += v;
            squares[m] += v * v;
        }
    }
    for (int c = 0; c < 3; c++) {
        int64_t s = 0, q = 0; /* exact, as numba's float64 sums of these integers are */
        for (ptrdiff_t m = c; m < m_out; m += 3) {
            s += sums[m];
            q += squares[m];
        }
        channel_sums[c] = (double)s;
        channel_sums[3 + c] = (double)q;
    }
}

/* The header decode_into's check_header accepts without doubt: an RGB-coded JPEG of the planned size with
 * one of the standard chroma subsamplings. Anything else is declined, and the caller decodes it the long way. */
static int plain_header(const struct jpeg_decompress_struct *cinfo, int height, int width)
{
    static const int luma[][2] = {{1, 1}, {2, 1}, {2, 2}, {1, 2}, {4, 1}};
    if ((int)cinfo->image_height != height || (int)cinfo->image_width != width || cinfo->num_components != 3 ||
        cinfo->jpeg_color_space != JCS_YCbCr || cinfo->data_precision != 8)
        return 0;
    for (int k = 1; k < 3; k++)
        if (cinfo->comp_info[k].h_samp_factor != 1 || cinfo->comp_info[k].v_samp_factor != 1)
            return 0;
    for (size_t i = 0; i < sizeof(luma) / sizeof(luma[0]); i++)
        if (cinfo->comp_info[0].h_samp_factor == luma[i][0] && cinfo->comp_info[0].v_samp_factor == luma[i][1])
            return 1;
    return 0;
}

/* The work, without the GIL. Returns 0, or -1 with err->message set.
 * out (if not NULL) receives the window; `a` (if not NULL) gets each row the resample reads through
 * `horizontal` into `taps`. jpeg_h > 0: decline any header but a plain_header of jpeg_h x jpeg_w. */
static int decode(const unsigned char *data, size_t size, int scale_num, int frame_h, int frame_w,
                  int y0, int x0, int h, int w, unsigned char *out, struct error_manager *result,
                  int jpeg_h, int jpeg_w, const struct area *a, float *taps)
{
    struct jpeg_decompress_struct *cinfo = &tls.cinfo;
    struct error_manager *err = &tls.err;
    unsigned char *volatile row = NULL;
    volatile int failed = 0;

    if (!tls.ready) {
        cinfo->err = jpeg_std_error(&err->pub);
        err->pub.error_exit = on_error;
        err->pub.emit_message = on_message;
        jpeg_create_decompress(cinfo);
        tls.ready = 1;
    }
    err->warnings = 0;
    err->message[0] = '\0';
    if (setjmp(err->escape)) {
        failed = 1;
    } else {
        jpeg_mem_src(cinfo, (unsigned char *)data, (unsigned long)size);
        jpeg_read_header(cinfo, TRUE);
        if (jpeg_h > 0 && !plain_header(cinfo, jpeg_h, jpeg_w)) {
            snprintf(err->message, JMSG_LENGTH_MAX, "declined: not a plain %dx%d YCbCr JPEG", jpeg_w, jpeg_h);
            failed = 1;
        } else {
            cinfo->scale_num = (unsigned int)scale_num;
            cinfo->scale_denom = 8;
            cinfo->out_color_space = JCS_RGB;
            cinfo->dct_method = JDCT_ISLOW;
            cinfo->do_fancy_upsampling = TRUE;
            jpeg_start_decompress(cinfo);
        }
        if (failed) {
            /* declined before decompressing */
        } else if ((int)cinfo->output_height != frame_h || (int)cinfo->output_width != frame_w ||
            cinfo->output_components != 3) {
            snprintf(err->message, JMSG_LENGTH_MAX, "decodes to %ux%ux%d at scale %d/8, expected %dx%dx3",
                     cinfo->output_width, cinfo->output_height, cinfo->output_components, scale_num, frame_w,
                     frame_h);
            failed = 1;
        } else {
            JDIMENSION left = (JDIMENSION)x0, width = (JDIMENSION)w;
            jpeg_crop_scanline(cinfo, &left, &width); /* left moves down to an iMCU boundary */
            row = (unsigned char *)malloc((size_t)cinfo->output_width * 3);
            if (row == NULL) {
                snprintf(err->message, JMSG_LENGTH_MAX, "out of memory");
                failed = 1;
            } else {
                size_t skip = (size_t)(x0 - (int)left) * 3;
                JSAMPROW rows[1];
                rows[0] = row;
                if (y0 > 0)
                    jpeg_skip_scanlines(cinfo, (JDIMENSION)y0);
                for (int r = 0; r < h; r++) {
                    if (jpeg_read_scanlines(cinfo, rows, 1) != 1) {
                        snprintf(err->message, JMSG_LENGTH_MAX, "ran out of rows at row %d", y0 + r);
                        failed = 1;
                        break;
                    }
                    if (out != NULL)
                        memcpy(out + (size_t)r * w * 3, row + skip, (size_t)w * 3);
                    if (a != NULL && r >= a->h_lo && r < a->h_hi)
                        horizontal(a, row + skip, taps + (size_t)(r - a->h_lo) * a->m_out);
                }
            }
        }
    }
    jpeg_abort_decompress(cinfo); /* back to idle; the rows below the window are never decoded */
    free(row);
    result->warnings = err->warnings;
    memcpy(result->message, err->message, sizeof(err->message));
    return failed ? -1 : 0;
}

static PyObject *decode_window(PyObject *self, PyObject *args)
{
    Py_buffer data, out;
    int scale_num, frame_h, frame_w, y0, x0, h, w;
    struct error_manager err;
    int status;

    if (!PyArg_ParseTuple(args, "y*iiiiiiiw*", &data, &scale_num, &frame_h, &frame_w, &y0, &x0, &h, &w, &out))
        return NULL;
    if (scale_num < 1 || scale_num > 16 || y0 < 0 || x0 < 0 || h < 1 || w < 1 || y0 + h > frame_h ||
        x0 + w > frame_w) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "window outside the frame, or a scale outside 1..16 eighths");
        return NULL;
    }
    if (out.len < (Py_ssize_t)h * w * 3 || !PyBuffer_IsContiguous(&out, 'C')) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "out must be a C-contiguous buffer of at least h * w * 3 bytes");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = decode((const unsigned char *)data.buf, (size_t)data.len, scale_num, frame_h, frame_w, y0, x0, h, w,
                    (unsigned char *)out.buf, &err, 0, 0, NULL, NULL);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (status != 0) {
        PyErr_SetString(PyExc_ValueError, err.message[0] ? err.message : "undecodable JPEG");
        return NULL;
    }
    return PyLong_FromLong(err.warnings);
}

/* A C-contiguous buffer of `ndim` dimensions and `itemsize`-byte items whose format ends in one of `kinds`. */
static int get_array(PyObject *obj, int ndim, Py_ssize_t itemsize, const char *kinds, int writable, Py_buffer *view,
                     const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = view->format != NULL ? view->format : "B";
    char kind = f[0] != '\0' ? f[strlen(f) - 1] : '?';
    if (view->ndim != ndim || view->itemsize != itemsize || strchr(kinds, kind) == NULL) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %d-dimensional array of %zd-byte '%s' items", name,
                     ndim, itemsize, kinds);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Checks the geometry against the window: every read inside it, every output element written once. */
static int check_area(struct area *a, int h, int w, Py_ssize_t sy, Py_ssize_t ty, Py_ssize_t tx, Py_ssize_t m_out,
                      Py_ssize_t nruns)
{
    if (sy < 1 || ty < 1 || tx < 1 || nruns < 1 || m_out < 3 || m_out % 3 || sy > 1 << 20 || ty > h ||
        tx > w || m_out > 3 << 20 || nruns > m_out)
        return -1;
    int64_t prev = 0;
    for (Py_ssize_t i = 0; i < sy; i++) {
        if (a->y_first[i] < prev || a->y_first[i] > h - ty) /* no int64 overflow for any y_first */
            return -1;
        prev = a->y_first[i];
    }
    int64_t end = 0;
    for (Py_ssize_t r = 0; r < nruns; r++) {
        int64_t m0 = a->x_runs[3 * r], m1 = a->x_runs[3 * r + 1], off = a->x_runs[3 * r + 2];
        if (m0 != end || m1 <= m0 || m1 > m_out || off < -m0 || off > (int64_t)w * 3 ||
            m1 - 1 + off + 3 * (tx - 1) >= (int64_t)w * 3)
            return -1;
        end = m1;
    }
    if (end != m_out)
        return -1;
    a->sy = (int)sy;
    a->ty = (int)ty;
    a->tx = (int)tx;
    a->m_out = (int)m_out;
    a->nruns = (int)nruns;
    a->h_lo = (int)a->y_first[0];
    a->h_hi = (int)(a->y_first[sy - 1] + ty);
    return 0;
}

static PyObject *decode_resample(PyObject *self, PyObject *args)
{
    PyObject *datas, *objs[6], *seq = NULL, *failed_list = NULL;
    int jpeg_h, jpeg_w, scale_num, frame_h, frame_w, y0, x0, h, w;
    Py_buffer views[6];
    int got = 0;
    static const char *names[6] = {"y_first", "y_weights", "x_weights", "x_runs", "out", "sums"};
    static const int ndims[6] = {1, 2, 2, 2, 3, 2};
    static const Py_ssize_t sizes[6] = {8, 4, 4, 8, 1, 8};
    static const char *kinds[6] = {"lq", "f", "f", "lq", "B", "d"};

    if (!PyArg_ParseTuple(args, "OiiiiiiiiiOOOOOO", &datas, &jpeg_h, &jpeg_w, &scale_num, &frame_h, &frame_w, &y0,
                          &x0, &h, &w, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5]))
        return NULL;
    if (scale_num < 1 || scale_num > 16 || jpeg_h < 1 || jpeg_w < 1 || y0 < 0 || x0 < 0 || h < 1 || w < 1 ||
        y0 + h > frame_h || x0 + w > frame_w) {
        PyErr_SetString(PyExc_ValueError, "window outside the frame, or a scale outside 1..16 eighths");
        return NULL;
    }
    for (; got < 6; got++)
        if (get_array(objs[got], ndims[got], sizes[got], kinds[got], got >= 4, &views[got], names[got]) < 0)
            goto done;
    struct area a = {0};
    a.y_first = (const int64_t *)views[0].buf;
    a.y_weights = (const float *)views[1].buf;
    a.x_weights = (const float *)views[2].buf;
    a.x_runs = (const int64_t *)views[3].buf;
    Py_ssize_t sy = views[0].shape[0], m_out = views[2].shape[1];
    if (views[1].shape[0] != sy || views[3].shape[1] != 3 ||
        check_area(&a, h, w, sy, views[1].shape[1], views[2].shape[0], m_out, views[3].shape[0]) < 0) {
        PyErr_SetString(PyExc_ValueError, "resample geometry does not fit the window");
        goto done;
    }
    seq = PySequence_Fast(datas, "datas must be a sequence of bytes (or None)");
    if (seq == NULL)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (views[4].shape[0] < n || views[4].shape[1] != sy || views[4].shape[2] != m_out || views[5].shape[0] < n ||
        views[5].shape[1] != 6) {
        PyErr_SetString(PyExc_ValueError, "out must be (n, rows, row length) uint8 and sums (n, 6) float64");
        goto done;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] != Py_None && !PyBytes_Check(items[i])) {
            PyErr_SetString(PyExc_TypeError, "datas must be a sequence of bytes (or None)");
            goto done;
        }
    /* The sequence holds its items; a list's items could change while the GIL is released, a tuple's cannot. */
    PyObject *held = PySequence_Tuple(seq);
    if (held == NULL)
        goto done;
    Py_DECREF(seq);
    seq = held;
    items = PySequence_Fast_ITEMS(seq);
    unsigned char *status = (unsigned char *)calloc((size_t)n + 1, 1);
    float *taps = (float *)malloc(sizeof(float) * ((size_t)(a.h_hi - a.h_lo) * (size_t)m_out + (size_t)w * 3));
    int32_t *counts = (int32_t *)malloc(sizeof(int32_t) * 2 * (size_t)m_out);
    if (status == NULL || taps == NULL || counts == NULL) {
        free(status);
        free(taps);
        free(counts);
        PyErr_NoMemory();
        goto done;
    }
    a.line = taps + (size_t)(a.h_hi - a.h_lo) * (size_t)m_out;
    a.line_len = w * 3;
    unsigned char *out = (unsigned char *)views[4].buf;
    double *sums = (double *)views[5].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct error_manager err;
        if (items[i] == Py_None) /* the caller could not read it */
            continue;
        int st = decode((const unsigned char *)PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]),
                        scale_num, frame_h, frame_w, y0, x0, h, w, NULL, &err, jpeg_h, jpeg_w, &a, taps);
        if (st != 0 || err.warnings != 0)
            status[i] = 1;
        else
            vertical(&a, taps, out + (size_t)i * sy * m_out, sums + (size_t)i * 6, counts);
    }
    Py_END_ALLOW_THREADS
    free(taps);
    free(counts);
    failed_list = PyList_New(0);
    for (Py_ssize_t i = 0; failed_list != NULL && i < n; i++) {
        if (!status[i])
            continue;
        PyObject *k = PyLong_FromSsize_t(i);
        if (k == NULL || PyList_Append(failed_list, k) < 0)
            Py_CLEAR(failed_list);
        Py_XDECREF(k);
    }
    free(status);
done:
    Py_XDECREF(seq);
    while (got-- > 0)
        PyBuffer_Release(&views[got]);
    return failed_list;
}

static PyMethodDef methods[] = {
    {"decode_window", decode_window, METH_VARARGS,
     "decode_window(data, scale_num, frame_h, frame_w, y0, x0, h, w, out) -> warnings\n\n"
     "Decode rows y0..y0+h-1, columns x0..x0+w-1 of a JPEG's frame at scale scale_num/8 (frame_h x "
     "frame_w, checked) into out, C-contiguous uint8 (h, w, 3) RGB. Raises ValueError for an undecodable "
     "JPEG; returns how many warnings (corrupt data decoded past) libjpeg gave."},
    {"decode_resample", decode_resample, METH_VARARGS,
     "decode_resample(datas, jpeg_h, jpeg_w, scale_num, frame_h, frame_w, y0, x0, h, w, y_first, y_weights, "
     "x_weights, x_runs, out, sums) -> declined\n\n"
     "Decode the window (as decode_window) of each JPEG in datas (bytes, or None: skipped) and area-resample it "
     "(kernels.resample_area_serial's arithmetic, bit for bit) into out[i] and its channel sums into sums[i]. "
     "Returns the indices it did not do: an error, a libjpeg warning, or a header other than a plain "
     "jpeg_w x jpeg_h YCbCr JPEG; their rows of out and sums are untouched. No GIL while it works."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cropdecode",
                                    "A JPEG window decoder on the system's libjpeg-turbo.", -1, methods};

PyMODINIT_FUNC PyInit__cropdecode(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL)
        PyModule_AddIntConstant(m, "LIBJPEG_VERSION", JPEG_LIB_VERSION);
    return m;
}
