/* Server side of unary gRPC over HTTP/2 (cleartext), on libnghttp2: the OTLP/gRPC front end's wire.
 *
 * Why: grpcio costs ~190 µs of CPU per request even with a handler that does nothing (its C core,
 * the Cython layer and the completion-queue thread hand-off), which is most of what a 1-span OTLP
 * request costs. Here nghttp2 does the HTTP/2 framing, HPACK, flow control, PING and SETTINGS; this
 * file only collects each stream's headers and body, checks the gRPC message framing, and hands
 * Python one tuple per finished request. Python answers with `respond`, and writes `output()` to
 * the socket. No I/O happens here: the asyncio protocol (grpc_native.py) owns the socket.
 *
 * Bounds: one request's body at most `max_message_bytes` (+5, the gRPC prefix); a connection's
 * unfinished bodies at most `max_buffered_bytes` together; header block at most MAX_HEADER_BYTES;
 * concurrent streams at most `max_streams` (SETTINGS_MAX_CONCURRENT_STREAMS). A request over a bound
 * is answered at once with a gRPC status and the rest of its body is discarded.
 *
 * A finished request is (stream_id, path, message, compressed, headers, problem):
 *   path: str (the :path), message: bytes (the gRPC message, prefix removed) or None,
 *   compressed: bool (the message's compressed flag), headers: dict[str, str] (regular headers),
 *   problem: None or (reason: str, text: str) — then message is None; reason is a Refusal value of
 *   outcomes.py or "unimplemented".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <string.h>

#define MAX_HEADER_BYTES (16 * 1024)
#define GRPC_PREFIX 5
/* Why a request is refused before Python decodes it: Refusal values of outcomes.py (status.py turns
 * them into gRPC codes), plus "unimplemented" (not an OTLP call at all). */
#define ST_UNIMPLEMENTED "unimplemented"
#define ST_MALFORMED "malformed"
#define ST_OVERLOADED "overloaded"
#define ST_TOO_LARGE "too_large"
#define ST_UNSUPPORTED_MEDIA "unsupported_media"

static PyObject *ProtocolError;

typedef struct Stream {
    int32_t id;
    struct Stream *prev, *next; /* the session's list of live streams */
    PyObject *headers;          /* dict, regular headers; NULL once handed over */
    PyObject *path;             /* str or NULL */
    size_t header_bytes;
    int post, content_type_ok;
    const char *problem_code;   /* NULL = none; else a reason (above) */
    const char *problem_text;
    char *body;
    size_t len, cap;
    int delivered;              /* handed to Python (finished, or refused early) */
    int remote_closed;          /* the client's half is closed (END_STREAM seen) */
    int reset_after_answer;     /* answered before the client finished sending: RST(NO_ERROR) after */
    /* the response message, read by the data provider */
    char *out;
    size_t out_len, out_off;
    nghttp2_nv *trailers;
    size_t ntrailers;
    char *trailer_store;        /* names and values of the trailers, one allocation */
} Stream;

typedef struct {
    PyObject_HEAD
    nghttp2_session *session;
    Stream *streams;
    PyObject *finished;         /* list of request tuples, collected during receive() */
    size_t max_message;
    size_t max_buffered;
    size_t buffered;            /* bytes of unfinished bodies on this connection */
    int callback_error;         /* a Python error raised inside a callback */
} Session;

static void stream_free_body(Session *s, Stream *st) {
    if (st->body) {
        s->buffered -= st->len;
        PyMem_Free(st->body);
        st->body = NULL;
    }
    st->len = st->cap = 0;
}

static void stream_free(Session *s, Stream *st) {
    stream_free_body(s, st);
    Py_CLEAR(st->headers);
    Py_CLEAR(st->path);
    PyMem_Free(st->out);
    PyMem_Free(st->trailers);
    PyMem_Free(st->trailer_store);
    if (st->prev) st->prev->next = st->next; else s->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    PyMem_Free(st);
}

static int refuse_early(Session *s, Stream *st, const char *code, const char *text);

/* Hand a finished (or early-refused) request to Python. */
static int deliver(Session *s, Stream *st) {
    PyObject *message = Py_None, *problem = Py_None, *path = st->path ? st->path : Py_None;
    int compressed = 0;
    PyObject *owned_message = NULL, *owned_problem = NULL;
    st->delivered = 1;
    if (!st->problem_code) {
        if (!st->post) {
            st->problem_code = ST_UNIMPLEMENTED;
            st->problem_text = "gRPC needs the POST method";
        } else if (!st->content_type_ok) {
            st->problem_code = ST_UNSUPPORTED_MEDIA;
            st->problem_text = "content-type must be application/grpc (or application/grpc+proto)";
        } else if (!st->path) {
            st->problem_code = ST_UNIMPLEMENTED;
            st->problem_text = "request has no :path";
        } else if (st->len < GRPC_PREFIX) {
            st->problem_code = ST_MALFORMED;
            st->problem_text = st->len ? "request body is shorter than the 5-byte gRPC message prefix"
                                       : "request carries no gRPC message";
        } else {
            const unsigned char *b = (const unsigned char *)st->body;
            uint32_t declared = ((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 8) | b[4];
            if (b[0] > 1) {
                st->problem_code = ST_MALFORMED;
                st->problem_text = "gRPC message prefix has an unknown flag (not 0 or 1)";
            } else if ((size_t)declared != st->len - GRPC_PREFIX) {
                st->problem_code = ST_MALFORMED;
                st->problem_text = (size_t)declared > st->len - GRPC_PREFIX
                                       ? "gRPC message is shorter than its prefix says (truncated body)"
                                       : "request body holds more than one gRPC message (unary call)";
            } else {
                compressed = b[0];
                owned_message = PyBytes_FromStringAndSize(st->body + GRPC_PREFIX, (Py_ssize_t)declared);
                if (!owned_message) return -1;
                message = owned_message;
            }
        }
    }
    stream_free_body(s, st);
    if (st->problem_code) {
        owned_problem = Py_BuildValue("(ss)", st->problem_code, st->problem_text);
        if (!owned_problem) { Py_XDECREF(owned_message); return -1; }
        problem = owned_problem;
    }
    PyObject *headers = st->headers ? st->headers : Py_None;
    PyObject *id = PyLong_FromLong(st->id);
    PyObject *item = id ? PyTuple_Pack(6, id, path, message, compressed ? Py_True : Py_False, headers, problem)
                        : NULL;
    Py_XDECREF(id);
    Py_XDECREF(owned_message);
    Py_XDECREF(owned_problem);
    Py_CLEAR(st->headers);
    if (!item) return -1;
    int rc = PyList_Append(s->finished, item);
    Py_DECREF(item);
    return rc;
}

static int refuse_early(Session *s, Stream *st, const char *code, const char *text) {
    st->problem_code = code;
    st->problem_text = text;
    stream_free_body(s, st);
    if (!st->remote_closed) st->reset_after_answer = 1;
    return deliver(s, st);
}

/* -- nghttp2 callbacks ------------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    Session *s = (Session *)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    Stream *st = PyMem_Calloc(1, sizeof(Stream));
    if (!st) { s->callback_error = 1; return NGHTTP2_ERR_CALLBACK_FAILURE; } /* receive() raises MemoryError */
    st->id = frame->hd.stream_id;
    st->headers = PyDict_New();
    if (!st->headers) { PyMem_Free(st); s->callback_error = 1; return NGHTTP2_ERR_CALLBACK_FAILURE; }
    st->next = s->streams;
    if (s->streams) s->streams->prev = st;
    s->streams = st;
    nghttp2_session_set_stream_user_data(session, st->id, st);
    return 0;
}

static int starts_with(const uint8_t *value, size_t len, const char *prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(value, prefix, n) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
    (void)flags;
    Session *s = (Session *)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st || st->delivered) return 0; /* trailers of a request: ignored */
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > MAX_HEADER_BYTES) {
        if (!st->problem_code) {
            st->problem_code = ST_TOO_LARGE;
            st->problem_text = "request headers exceed 16 KiB";
        }
        return 0;
    }
    if (namelen && name[0] == ':') {
        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            st->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            Py_CLEAR(st->path);
            st->path = PyUnicode_DecodeLatin1((const char *)value, (Py_ssize_t)valuelen, NULL);
            if (!st->path) { s->callback_error = 1; return NGHTTP2_ERR_CALLBACK_FAILURE; }
        }
        return 0;
    }
    if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        /* application/grpc, application/grpc+proto, application/grpc;... */
        st->content_type_ok = starts_with(value, valuelen, "application/grpc") &&
                              (valuelen == 16 || value[16] == '+' || value[16] == ';');
    }
    PyObject *k = PyUnicode_DecodeLatin1((const char *)name, (Py_ssize_t)namelen, NULL);
    PyObject *v = k ? PyUnicode_DecodeLatin1((const char *)value, (Py_ssize_t)valuelen, NULL) : NULL;
    int rc = v ? PyDict_SetItem(st->headers, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    if (rc < 0) { s->callback_error = 1; return NGHTTP2_ERR_CALLBACK_FAILURE; }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data) {
    (void)flags;
    Session *s = (Session *)user_data;
    Stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!st || st->delivered || st->problem_code) return 0; /* discarded */
    const char *code = NULL, *text = NULL; /* a bound this chunk crosses: the call is answered now */
    if (st->len + len > s->max_message + GRPC_PREFIX) {
        code = ST_TOO_LARGE;
        text = "request message is larger than otlp.max_request_bytes";
    } else if (s->buffered + len > s->max_buffered) {
        code = ST_OVERLOADED;
        text = "this connection has too many unfinished request bodies buffered; retry later";
    }
    if (code) {
        if (refuse_early(s, st, code, text) < 0) {
            s->callback_error = 1;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    }
    if (st->len + len > st->cap) {
        size_t cap = st->cap ? st->cap : 1024;
        while (cap < st->len + len) cap *= 2;
        if (cap > s->max_message + GRPC_PREFIX) cap = s->max_message + GRPC_PREFIX;
        char *grown = PyMem_Realloc(st->body, cap);
        if (!grown) { s->callback_error = 1; return NGHTTP2_ERR_CALLBACK_FAILURE; }
        st->body = grown;
        st->cap = cap;
    }
    memcpy(st->body + st->len, data, len);
    st->len += len;
    s->buffered += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    Session *s = (Session *)user_data;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    Stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st) return 0;
    st->remote_closed = 1;
    st->reset_after_answer = 0;
    if (st->delivered) return 0;
    if (deliver(s, st) < 0) { s->callback_error = 1; return NGHTTP2_ERR_CALLBACK_FAILURE; }
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    Stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st && st->reset_after_answer) {
        st->reset_after_answer = 0;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
    (void)error_code;
    Session *s = (Session *)user_data;
    Stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (st) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        stream_free(s, st);
    }
    return 0;
}


/* The response message, then the trailers (nghttp2 asks for the trailers' submission at EOF). */
static ssize_t read_response(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                             uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
    (void)user_data;
    Stream *st = source->ptr;
    size_t n = st->out_len - st->out_off;
    if (n > length) n = length;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(session, stream_id, st->trailers, st->ntrailers) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* -- the Python type --------------------------------------------------------------------------- */

static int Session_init(Session *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_message_bytes", "max_buffered_bytes", "max_streams", "window_bytes", NULL};
    Py_ssize_t max_message, max_buffered, max_streams, window;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nnnn", kwlist, &max_message, &max_buffered, &max_streams,
                                     &window))
        return -1;
    if (self->session) {
        PyErr_SetString(PyExc_RuntimeError, "Session is already initialised");
        return -1;
    }
    if (max_message < 1 || max_buffered < 1 || max_streams < 1 || window < 65535 || window > 0x7fffffff ||
        max_message > (Py_ssize_t)0x7fffffff - GRPC_PREFIX) {
        PyErr_SetString(PyExc_ValueError, "Session: a bound is out of range");
        return -1;
    }
    self->max_message = (size_t)max_message;
    self->max_buffered = (size_t)max_buffered;
    self->finished = PyList_New(0);
    if (!self->finished) return -1;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) { PyErr_NoMemory(); return -1; }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rc = nghttp2_session_server_new(&self->session, cb, self);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) { self->session = NULL; PyErr_NoMemory(); return -1; }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)(max_streams > 0x7fffffff ? 0x7fffffff : max_streams)},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES},
    };
    if (nghttp2_submit_settings(self->session, NGHTTP2_FLAG_NONE, settings, 3) != 0 ||
        nghttp2_session_set_local_window_size(self->session, NGHTTP2_FLAG_NONE, 0,
                                              window > 0x7fffffff / 4 ? 0x7fffffff : (int32_t)window * 4) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "nghttp2 refused the connection settings");
        return -1;
    }
    return 0;
}

static void Session_dealloc(Session *self) {
    if (self->session) nghttp2_session_del(self->session); /* frees its streams without callbacks */
    self->session = NULL;
    while (self->streams) stream_free(self, self->streams);
    Py_CLEAR(self->finished);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(Session *self) {
    if (!self->session) {
        PyErr_SetString(PyExc_RuntimeError, "Session is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *take_finished(Session *self) {
    PyObject *done = self->finished;
    self->finished = PyList_New(0);
    if (!self->finished) { self->finished = done; return NULL; }
    return done;
}

static PyObject *Session_receive(Session *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    self->callback_error = 0;
    ssize_t n = nghttp2_session_mem_recv(self->session, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (self->callback_error) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    if (n < 0) {
        PyErr_Format(ProtocolError, "HTTP/2 protocol error: %s", nghttp2_strerror((int)n));
        return NULL;
    }
    return take_finished(self);
}

static PyObject *Session_output(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (!ready(self)) return NULL;
    PyObject *first = NULL;   /* the usual case: one chunk, returned without a copy */
    PyObject *joined = NULL;  /* bytearray once a second chunk comes */
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(self->session, &data);
        if (n < 0) {
            Py_XDECREF(first);
            Py_XDECREF(joined);
            PyErr_Format(ProtocolError, "HTTP/2 send error: %s", nghttp2_strerror((int)n));
            return NULL;
        }
        if (n == 0) break;
        if (!first) {
            first = PyBytes_FromStringAndSize((const char *)data, n);
            if (!first) return NULL;
            continue;
        }
        if (!joined) {
            joined = PyByteArray_FromObject(first);
            if (!joined) { Py_DECREF(first); return NULL; }
        }
        Py_ssize_t old = PyByteArray_GET_SIZE(joined);
        if (PyByteArray_Resize(joined, old + n) < 0) { Py_DECREF(first); Py_DECREF(joined); return NULL; }
        memcpy(PyByteArray_AS_STRING(joined) + old, data, (size_t)n);
    }
    if (joined) {
        Py_DECREF(first);
        PyObject *out = PyBytes_FromObject(joined);
        Py_DECREF(joined);
        return out;
    }
    return first ? first : PyBytes_FromStringAndSize(NULL, 0);
}

/* name and value of a trailer given as str (ASCII) or bytes */
static int as_octets(PyObject *o, const char **data, Py_ssize_t *len) {
    if (PyBytes_Check(o)) {
        *data = PyBytes_AS_STRING(o);
        *len = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        *data = PyUnicode_AsUTF8AndSize(o, len);
        return *data ? 0 : -1;
    }
    PyErr_SetString(PyExc_TypeError, "trailer names and values must be str or bytes");
    return -1;
}

static PyObject *Session_respond(Session *self, PyObject *args) {
    int stream_id, status;
    PyObject *message, *extra;
    if (!PyArg_ParseTuple(args, "iOiO", &stream_id, &message, &status, &extra)) return NULL;
    if (!ready(self)) return NULL;
    if (message != Py_None && !PyBytes_Check(message)) {
        PyErr_SetString(PyExc_TypeError, "message must be bytes or None");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(extra, "trailers must be a sequence of (name, value) pairs");
    if (!seq) return NULL;
    Stream *st = nghttp2_session_get_stream_user_data(self->session, stream_id);
    if (!st || !st->delivered || st->out || st->trailers) {
        Py_DECREF(seq);
        Py_RETURN_FALSE; /* the client reset the stream (or it was answered already) */
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    char code[12];
    int code_len = snprintf(code, sizeof code, "%d", status);
    /* one store for the names and values: grpc-status, then each extra pair */
    size_t store = (size_t)code_len;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        const char *d;
        Py_ssize_t l;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "each trailer must be a (name, value) tuple");
            return NULL;
        }
        for (int j = 0; j < 2; j++) {
            if (as_octets(PyTuple_GET_ITEM(pair, j), &d, &l) < 0) { Py_DECREF(seq); return NULL; }
            store += (size_t)l;
        }
    }
    size_t nv_count = 1 + (size_t)count;
    nghttp2_nv *nv = PyMem_Calloc(nv_count + 3, sizeof(nghttp2_nv)); /* + :status, content-type, accept */
    char *bytes = PyMem_Malloc(store ? store : 1);
    if (!nv || !bytes) { PyMem_Free(nv); PyMem_Free(bytes); Py_DECREF(seq); return PyErr_NoMemory(); }
    /* the response headers come first in the same array (trailers-only answers send them together) */
    static const char ct[] = "application/grpc", acc[] = "identity,gzip";
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nv[1] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)ct, 12, sizeof ct - 1, NGHTTP2_NV_FLAG_NONE};
    nv[2] = (nghttp2_nv){(uint8_t *)"grpc-accept-encoding", (uint8_t *)acc, 20, sizeof acc - 1, NGHTTP2_NV_FLAG_NONE};
    nghttp2_nv *tr = nv + 3;
    char *p = bytes;
    memcpy(p, code, (size_t)code_len);
    tr[0] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)p, 11, (size_t)code_len, NGHTTP2_NV_FLAG_NONE};
    p += code_len;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        const char *nd, *vd;
        Py_ssize_t nl, vl;
        as_octets(PyTuple_GET_ITEM(pair, 0), &nd, &nl);
        as_octets(PyTuple_GET_ITEM(pair, 1), &vd, &vl);
        memcpy(p, nd, (size_t)nl);
        tr[1 + i].name = (uint8_t *)p;
        tr[1 + i].namelen = (size_t)nl;
        p += nl;
        memcpy(p, vd, (size_t)vl);
        tr[1 + i].value = (uint8_t *)p;
        tr[1 + i].valuelen = (size_t)vl;
        tr[1 + i].flags = NGHTTP2_NV_FLAG_NONE;
        p += vl;
    }
    Py_DECREF(seq);
    int rc;
    if (status != 0 || message == Py_None) { /* trailers-only: one HEADERS frame that ends the stream */
        rc = nghttp2_submit_response(self->session, stream_id, nv, nv_count + 3, NULL);
        PyMem_Free(nv);
        PyMem_Free(bytes);
    } else {
        Py_ssize_t mlen = PyBytes_GET_SIZE(message);
        st->out = PyMem_Malloc((size_t)mlen + GRPC_PREFIX);
        if (!st->out) { PyMem_Free(nv); PyMem_Free(bytes); return PyErr_NoMemory(); }
        st->out[0] = 0;
        st->out[1] = (char)((mlen >> 24) & 0xff);
        st->out[2] = (char)((mlen >> 16) & 0xff);
        st->out[3] = (char)((mlen >> 8) & 0xff);
        st->out[4] = (char)(mlen & 0xff);
        memcpy(st->out + GRPC_PREFIX, PyBytes_AS_STRING(message), (size_t)mlen);
        st->out_len = (size_t)mlen + GRPC_PREFIX;
        st->out_off = 0;
        /* the trailers are submitted by read_response at the end of the data: kept until then */
        memmove(nv, tr, nv_count * sizeof(nghttp2_nv));
        st->trailers = nv;
        st->ntrailers = nv_count;
        st->trailer_store = bytes;
        nghttp2_data_provider provider = {.source = {.ptr = st}, .read_callback = read_response};
        nghttp2_nv head[3];
        memcpy(head, (nghttp2_nv[]){{(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
                                     {(uint8_t *)"content-type", (uint8_t *)ct, 12, sizeof ct - 1, NGHTTP2_NV_FLAG_NONE},
                                     {(uint8_t *)"grpc-accept-encoding", (uint8_t *)acc, 20, sizeof acc - 1,
                                      NGHTTP2_NV_FLAG_NONE}},
               sizeof head);
        rc = nghttp2_submit_response(self->session, stream_id, head, 3, &provider);
    }
    if (rc != 0) {
        PyErr_Format(ProtocolError, "cannot answer stream %d: %s", stream_id, nghttp2_strerror(rc));
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *Session_want_io(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (!ready(self)) return NULL;
    return PyBool_FromLong(nghttp2_session_want_read(self->session) || nghttp2_session_want_write(self->session));
}

static PyObject *Session_shutdown_notice(Session *self, PyObject *Py_UNUSED(ignored)) {
    if (!ready(self)) return NULL;
    nghttp2_submit_shutdown_notice(self->session);
    Py_RETURN_NONE;
}

static PyObject *Session_goaway(Session *self, PyObject *args) {
    unsigned int error_code = NGHTTP2_NO_ERROR;
    if (!PyArg_ParseTuple(args, "|I", &error_code)) return NULL;
    if (!ready(self)) return NULL;
    int rc = nghttp2_submit_goaway(self->session, NGHTTP2_FLAG_NONE,
                                   nghttp2_session_get_last_proc_stream_id(self->session), error_code, NULL, 0);
    if (rc != 0) {
        PyErr_Format(ProtocolError, "cannot send GOAWAY: %s", nghttp2_strerror(rc));
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Session_get_buffered(Session *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(self->buffered);
}

static PyMethodDef Session_methods[] = {
    {"receive", (PyCFunction)Session_receive, METH_O,
     "receive(data) -> list of finished requests (stream_id, path, message, compressed, headers, problem)"},
    {"output", (PyCFunction)Session_output, METH_NOARGS, "output() -> bytes to write to the socket (may be empty)"},
    {"respond", (PyCFunction)Session_respond, METH_VARARGS,
     "respond(stream_id, message: bytes | None, status: int, trailers) -> False if the stream is gone"},
    {"want_io", (PyCFunction)Session_want_io, METH_NOARGS, "want_io() -> False once the connection is done"},
    {"shutdown_notice", (PyCFunction)Session_shutdown_notice, METH_NOARGS, "graceful GOAWAY, first step"},
    {"goaway", (PyCFunction)Session_goaway, METH_VARARGS, "goaway(error_code=0): no new streams after this"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Session_getset[] = {
    {"buffered", (getter)Session_get_buffered, NULL, "bytes of unfinished request bodies held", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "receiver.frontends._h2grpc.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One HTTP/2 server connection carrying unary gRPC calls (no I/O: feed and drain it).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_h2grpc", "Unary gRPC over HTTP/2 on libnghttp2 (see grpc_native.py).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__h2grpc(void) {
    if (PyType_Ready(&SessionType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    ProtocolError = PyErr_NewException("receiver.frontends._h2grpc.ProtocolError", PyExc_ValueError, NULL);
    if (!ProtocolError || PyModule_AddObjectRef(m, "ProtocolError", ProtocolError) < 0 ||
        PyModule_AddObjectRef(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddStringConstant(m, "NGHTTP2_VERSION", NGHTTP2_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
