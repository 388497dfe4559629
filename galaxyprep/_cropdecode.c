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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
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

/* The work, without the GIL. Returns 0, or -1 with err->message set. */
static int decode(const unsigned char *data, size_t size, int scale_num, int frame_h, int frame_w,
                  int y0, int x0, int h, int w, unsigned char *out, struct error_manager *result)
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
        cinfo->scale_num = (unsigned int)scale_num;
        cinfo->scale_denom = 8;
        cinfo->out_color_space = JCS_RGB;
        cinfo->dct_method = JDCT_ISLOW;
        cinfo->do_fancy_upsampling = TRUE;
        jpeg_start_decompress(cinfo);
        if ((int)cinfo->output_height != frame_h || (int)cinfo->output_width != frame_w ||
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
                    memcpy(out + (size_t)r * w * 3, row + skip, (size_t)w * 3);
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
                    (unsigned char *)out.buf, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (status != 0) {
        PyErr_SetString(PyExc_ValueError, err.message[0] ? err.message : "undecodable JPEG");
        return NULL;
    }
    return PyLong_FromLong(err.warnings);
}

static PyMethodDef methods[] = {
    {"decode_window", decode_window, METH_VARARGS,
     "decode_window(data, scale_num, frame_h, frame_w, y0, x0, h, w, out) -> warnings\n\n"
     "Decode rows y0..y0+h-1, columns x0..x0+w-1 of a JPEG's frame at scale scale_num/8 (frame_h x "
     "frame_w, checked) into out, C-contiguous uint8 (h, w, 3) RGB. Raises ValueError for an undecodable "
     "JPEG; returns how many warnings (corrupt data decoded past) libjpeg gave."},
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
