/*
 * _otlpjson: OTLP/JSON trace objects, as orjson parsed them, -> protobuf wire bytes, in C.
 *
 * Why this exists: an OTLP/JSON span went through google.protobuf.json_format (ParseDict into a
 * message, then SerializeToString) before the native trace converter read it: ~250 us per GenAI span.
 * This module writes the protobuf encoding of a span (or of a ResourceSpans / ScopeSpans header)
 * straight from the dicts and lists orjson made, in ~1 us, and the bytes take the same converter as a
 * protobuf request (receiver/convert/traces_json.py assembles the request).
 *
 * It handles the values well-formed OTLP/JSON holds: hex trace and span ids, int64 as a number or a
 * decimal string, enums as numbers, unknown fields (ignored). Anything else, well-formed or not (an
 * enum name, a double as a string, bytesValue, a snake_case field name, a type error), makes it return
 * None rather than decide: the caller then parses that one object with json_format as before, which
 * accepts exactly what it accepted and refuses with the same message. So this module never has to
 * reproduce json_format's corner cases or its error wording, only to be certain when it does answer:
 * tests/test_traces_json.py holds it to json_format's bytes.
 *
 * Safety: the input is a tree of Python objects built by orjson (dict, list, str, int, float, bool,
 * None); recursion is bounded by MAX_DEPTH (deeper -> None), every buffer is freed on every path.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 48 /* nested messages; deeper objects are left to json_format (and upb's limit of 100) */

/* Return codes of the encoders: OK, BAIL (leave the object to json_format), ERR (a Python exception). */
#define OK 0
#define BAIL 1
#define ERR (-1)

/* ---- 1. Output buffer ------------------------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int
reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return OK;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return ERR;
        }
        cap *= 2;
    }
    uint8_t *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return ERR;
    }
    b->data = data;
    b->cap = cap;
    return OK;
}

static int
put_varint(Buf *b, uint64_t v)
{
    if (reserve(b, 10))
        return ERR;
    while (v >= 0x80) {
        b->data[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (uint8_t)v;
    return OK;
}

static int
put_raw(Buf *b, const void *p, Py_ssize_t n)
{
    if (reserve(b, n))
        return ERR;
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return OK;
}

static int
put_fixed(Buf *b, uint32_t field, uint64_t v, int width)
{
    if (put_varint(b, ((uint64_t)field << 3) | (width == 8 ? 1 : 5)) || reserve(b, width))
        return ERR;
    for (int i = 0; i < width; i++)
        b->data[b->len++] = (uint8_t)(v >> (8 * i));
    return OK;
}

static int
put_delimited(Buf *b, uint32_t field, const void *p, Py_ssize_t n)
{
    if (put_varint(b, ((uint64_t)field << 3) | 2) || put_varint(b, (uint64_t)n))
        return ERR;
    return put_raw(b, p, n);
}

static int
varint_size(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A length-delimited field whose content is written after `start` (begin_message): its tag and length
 * are inserted in front of it. */
static Py_ssize_t
begin_message(Buf *b)
{
    return b->len;
}

static int
end_message(Buf *b, uint32_t field, Py_ssize_t start)
{
    uint64_t n = (uint64_t)(b->len - start);
    uint64_t tag = ((uint64_t)field << 3) | 2;
    int head = varint_size(tag) + varint_size(n);
    if (reserve(b, head))
        return ERR;
    memmove(b->data + start + head, b->data + start, (size_t)n);
    Py_ssize_t end = b->len + head;
    b->len = start;
    put_varint(b, tag); /* room reserved: cannot fail */
    put_varint(b, n);
    b->len = end;
    return OK;
}

/* ---- 2. Scalars, as json_format accepts them (the strict subset; the rest -> BAIL) ------------- */

static int
is_int(PyObject *v)
{
    return PyLong_Check(v) && !PyBool_Check(v);
}

/* A non-negative decimal string ("123"), at most `max`. */
static int
digits_u64(PyObject *v, uint64_t max, uint64_t *out)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) {
        PyErr_Clear();
        return BAIL;
    }
    if (n == 0 || n > 20)
        return BAIL;
    uint64_t acc = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return BAIL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (acc > (max - d) / 10)
            return BAIL;
        acc = acc * 10 + d;
    }
    *out = acc;
    return OK;
}

/* An unsigned integer field (fixed64, uint32, fixed32): a non-negative int or decimal string <= max. */
static int
unsigned_value(PyObject *v, uint64_t max, uint64_t *out)
{
    if (is_int(v)) {
        uint64_t x = PyLong_AsUnsignedLongLong(v);
        if (x == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return BAIL;
        }
        if (x > max)
            return BAIL;
        *out = x;
        return OK;
    }
    if (PyUnicode_Check(v))
        return digits_u64(v, max, out);
    return BAIL;
}

/* An int64 (AnyValue.intValue): an int or a decimal string, optionally negative. */
static int
int64_value(PyObject *v, int64_t *out)
{
    if (is_int(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return BAIL;
        }
        *out = x;
        return OK;
    }
    if (!PyUnicode_Check(v))
        return BAIL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) {
        PyErr_Clear();
        return BAIL;
    }
    int negative = n > 0 && s[0] == '-';
    uint64_t acc = 0;
    Py_ssize_t i = negative;
    if (n - i == 0 || n - i > 19)
        return BAIL;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return BAIL;
        acc = acc * 10 + (uint64_t)(s[i] - '0'); /* at most 19 digits: no overflow of uint64 */
    }
    if (acc > (uint64_t)INT64_MAX + (uint64_t)negative)
        return BAIL;
    *out = negative ? (int64_t)(0 - acc) : (int64_t)acc;
    return OK;
}

/* A string field: str (empty -> nothing written), None = unset. */
static int
string_field(Buf *b, uint32_t field, PyObject *v)
{
    if (v == Py_None)
        return OK;
    if (!PyUnicode_Check(v))
        return BAIL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) { /* lone surrogates: not UTF-8 */
        PyErr_Clear();
        return BAIL;
    }
    return n ? put_delimited(b, field, s, n) : OK;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A trace or span id: OTLP/JSON writes it in hex. None and "" = unset; anything but plain hex -> BAIL. */
static int
hex_field(Buf *b, uint32_t field, PyObject *v)
{
    if (v == Py_None)
        return OK;
    if (!PyUnicode_Check(v))
        return BAIL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) {
        PyErr_Clear();
        return BAIL;
    }
    if (n == 0)
        return OK;
    if (n % 2 || n > 128)
        return BAIL;
    uint8_t raw[64];
    for (Py_ssize_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return BAIL;
        raw[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return put_delimited(b, field, raw, n / 2);
}

static int
varint_field(Buf *b, uint32_t field, PyObject *v, uint64_t max)
{
    if (v == Py_None)
        return OK;
    uint64_t x;
    int rc = unsigned_value(v, max, &x);
    if (rc != OK || x == 0)
        return rc;
    if (put_varint(b, (uint64_t)field << 3) || put_varint(b, x))
        return ERR;
    return OK;
}

static int
fixed_field(Buf *b, uint32_t field, PyObject *v, int width)
{
    if (v == Py_None)
        return OK;
    uint64_t x;
    int rc = unsigned_value(v, width == 8 ? UINT64_MAX : UINT32_MAX, &x);
    if (rc != OK || x == 0)
        return rc;
    return put_fixed(b, field, x, width);
}

/* An unknown key is ignored, as json_format ignores it, unless json_format could read it as a field
 * (its proto name, snake_case; an extension, "[...]") or it is a field this module leaves to it. */
static int
unknown_key(const char *key, Py_ssize_t n, const char *const *leave)
{
    if (memchr(key, '_', (size_t)n) || (n && key[0] == '['))
        return BAIL;
    for (; leave != NULL && *leave != NULL; leave++)
        if (strlen(*leave) == (size_t)n && memcmp(*leave, key, (size_t)n) == 0)
            return BAIL;
    return OK;
}

#define KEY_IS(lit) (n == (Py_ssize_t)sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)

/* A dict key's UTF-8; a key that has none (lone surrogates) reads as "_", which unknown_key leaves to
 * json_format. */
static const char *
key_utf8(PyObject *k, Py_ssize_t *n)
{
    const char *s = PyUnicode_Check(k) ? PyUnicode_AsUTF8AndSize(k, n) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        *n = 1;
        return "_";
    }
    return s;
}

/* Iterate the items of dict `obj` as `key` (UTF-8, `n` bytes) and `value`; a non-dict -> BAIL. */
#define FOR_ITEMS(obj)                                                                                   \
    if (!PyDict_Check(obj))                                                                              \
        return BAIL;                                                                                     \
    Py_ssize_t pos_ = 0, n;                                                                              \
    PyObject *k_, *value;                                                                                \
    const char *key;                                                                                     \
    while (PyDict_Next(obj, &pos_, &k_, &value) && (key = key_utf8(k_, &n)) != NULL)

/* ---- 3. Messages -------------------------------------------------------------------------------- */

static int any_value(Buf *b, PyObject *obj, int depth);
static int key_values(Buf *b, uint32_t field, PyObject *list, int depth);

#define CHECK(expr)                                                                                      \
    do {                                                                                                 \
        int rc_ = (expr);                                                                                \
        if (rc_ != OK)                                                                                   \
            return rc_;                                                                                  \
    } while (0)

/* A message-typed field: None = unset; a dict -> its encoding, framed as `field`. */
#define MESSAGE_FIELD(b, field, obj, encoder, depth)                                                     \
    do {                                                                                                 \
        if ((obj) != Py_None) {                                                                          \
            Py_ssize_t start_ = begin_message(b);                                                        \
            CHECK(encoder(b, obj, (depth) + 1));                                                         \
            CHECK(end_message(b, field, start_));                                                        \
        }                                                                                                \
    } while (0)

/* {"values": [AnyValue, ...]} (ArrayValue) */
static int
array_value(Buf *b, PyObject *obj, int depth)
{
    if (depth > MAX_DEPTH)
        return BAIL;
    FOR_ITEMS(obj)
    {
        if (KEY_IS("values")) {
            if (value == Py_None)
                continue;
            if (!PyList_Check(value))
                return BAIL;
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
                PyObject *item = PyList_GET_ITEM(value, i);
                if (item == Py_None)
                    return BAIL;
                MESSAGE_FIELD(b, 1, item, any_value, depth);
            }
        } else
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

/* {"values": [KeyValue, ...]} (KeyValueList) */
static int
kvlist_value(Buf *b, PyObject *obj, int depth)
{
    if (depth > MAX_DEPTH)
        return BAIL;
    FOR_ITEMS(obj)
    {
        if (KEY_IS("values"))
            CHECK(key_values(b, 1, value, depth));
        else
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

static const char *const ANY_LEAVE[] = {"bytesValue", "stringValueStrindex", NULL};

/* AnyValue: one member of the `value` oneof, written even when it is empty or zero (a oneof member
 * is present once set). */
static int
any_value(Buf *b, PyObject *obj, int depth)
{
    if (depth > MAX_DEPTH)
        return BAIL;
    int members = 0;
    FOR_ITEMS(obj)
    {
        if (KEY_IS("stringValue")) {
            if (!PyUnicode_Check(value))
                return BAIL; /* None included: json_format clears the oneof then */
            Py_ssize_t len;
            const char *s = PyUnicode_AsUTF8AndSize(value, &len);
            if (s == NULL) {
                PyErr_Clear();
                return BAIL;
            }
            CHECK(put_delimited(b, 1, s, len));
        } else if (KEY_IS("boolValue")) {
            if (!PyBool_Check(value))
                return BAIL;
            CHECK(put_varint(b, 2 << 3));
            CHECK(put_varint(b, value == Py_True));
        } else if (KEY_IS("intValue")) {
            int64_t x;
            CHECK(int64_value(value, &x));
            CHECK(put_varint(b, 3 << 3));
            CHECK(put_varint(b, (uint64_t)x));
        } else if (KEY_IS("doubleValue")) {
            double x;
            if (PyFloat_CheckExact(value))
                x = PyFloat_AS_DOUBLE(value);
            else if (is_int(value)) {
                x = PyLong_AsDouble(value);
                if (x == -1.0 && PyErr_Occurred()) {
                    PyErr_Clear();
                    return BAIL;
                }
            } else
                return BAIL;
            uint64_t bits;
            memcpy(&bits, &x, sizeof bits);
            CHECK(put_fixed(b, 4, bits, 8));
        } else if (KEY_IS("arrayValue")) {
            if (value == Py_None)
                return BAIL;
            MESSAGE_FIELD(b, 5, value, array_value, depth);
        } else if (KEY_IS("kvlistValue")) {
            if (value == Py_None)
                return BAIL;
            MESSAGE_FIELD(b, 6, value, kvlist_value, depth);
        } else {
            CHECK(unknown_key(key, n, ANY_LEAVE));
            continue;
        }
        if (++members > 1)
            return BAIL; /* json_format refuses two members of a oneof */
    }
    return OK;
}

static const char *const KV_LEAVE[] = {"keyStrindex", NULL};

static int
key_value(Buf *b, PyObject *obj, int depth)
{
    if (depth > MAX_DEPTH)
        return BAIL;
    FOR_ITEMS(obj)
    {
        if (KEY_IS("key"))
            CHECK(string_field(b, 1, value));
        else if (KEY_IS("value"))
            MESSAGE_FIELD(b, 2, value, any_value, depth);
        else
            CHECK(unknown_key(key, n, KV_LEAVE));
    }
    return OK;
}

/* A repeated message field: None = empty; a list of dicts (a null element -> BAIL). */
#define REPEATED_FIELD(b, field, list, encoder, depth)                                                   \
    do {                                                                                                 \
        if ((list) != Py_None) {                                                                         \
            if (!PyList_Check(list))                                                                     \
                return BAIL;                                                                             \
            for (Py_ssize_t i_ = 0; i_ < PyList_GET_SIZE(list); i_++) {                                  \
                PyObject *item_ = PyList_GET_ITEM(list, i_);                                             \
                if (item_ == Py_None)                                                                    \
                    return BAIL;                                                                         \
                MESSAGE_FIELD(b, field, item_, encoder, depth);                                          \
            }                                                                                            \
        }                                                                                                \
    } while (0)

static int
key_values(Buf *b, uint32_t field, PyObject *list, int depth)
{
    REPEATED_FIELD(b, field, list, key_value, depth);
    return OK;
}

static int
span_status(Buf *b, PyObject *obj, int depth)
{
    (void)depth;
    FOR_ITEMS(obj)
    {
        if (KEY_IS("message"))
            CHECK(string_field(b, 2, value));
        else if (KEY_IS("code"))
            CHECK(varint_field(b, 3, value, INT32_MAX)); /* an enum: numbers only (names -> BAIL) */
        else
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

static int
event(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("timeUnixNano"))
            CHECK(fixed_field(b, 1, value, 8));
        else if (KEY_IS("name"))
            CHECK(string_field(b, 2, value));
        else if (KEY_IS("attributes"))
            CHECK(key_values(b, 3, value, depth));
        else if (KEY_IS("droppedAttributesCount"))
            CHECK(varint_field(b, 4, value, UINT32_MAX));
        else
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

/* The reference path converts "parentSpanId" of a link from hex too (and refuses it if not hex). */
static const char *const LINK_LEAVE[] = {"parentSpanId", NULL};

static int
span_link(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("traceId"))
            CHECK(hex_field(b, 1, value));
        else if (KEY_IS("spanId"))
            CHECK(hex_field(b, 2, value));
        else if (KEY_IS("traceState"))
            CHECK(string_field(b, 3, value));
        else if (KEY_IS("attributes"))
            CHECK(key_values(b, 4, value, depth));
        else if (KEY_IS("droppedAttributesCount"))
            CHECK(varint_field(b, 5, value, UINT32_MAX));
        else if (KEY_IS("flags"))
            CHECK(fixed_field(b, 6, value, 4));
        else
            CHECK(unknown_key(key, n, LINK_LEAVE));
    }
    return OK;
}

static int
span(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("traceId"))
            CHECK(hex_field(b, 1, value));
        else if (KEY_IS("spanId"))
            CHECK(hex_field(b, 2, value));
        else if (KEY_IS("traceState"))
            CHECK(string_field(b, 3, value));
        else if (KEY_IS("parentSpanId"))
            CHECK(hex_field(b, 4, value));
        else if (KEY_IS("name"))
            CHECK(string_field(b, 5, value));
        else if (KEY_IS("kind"))
            CHECK(varint_field(b, 6, value, INT32_MAX));
        else if (KEY_IS("startTimeUnixNano"))
            CHECK(fixed_field(b, 7, value, 8));
        else if (KEY_IS("endTimeUnixNano"))
            CHECK(fixed_field(b, 8, value, 8));
        else if (KEY_IS("attributes"))
            CHECK(key_values(b, 9, value, depth));
        else if (KEY_IS("droppedAttributesCount"))
            CHECK(varint_field(b, 10, value, UINT32_MAX));
        else if (KEY_IS("events"))
            REPEATED_FIELD(b, 11, value, event, depth);
        else if (KEY_IS("droppedEventsCount"))
            CHECK(varint_field(b, 12, value, UINT32_MAX));
        else if (KEY_IS("links"))
            REPEATED_FIELD(b, 13, value, span_link, depth);
        else if (KEY_IS("droppedLinksCount"))
            CHECK(varint_field(b, 14, value, UINT32_MAX));
        else if (KEY_IS("status"))
            MESSAGE_FIELD(b, 15, value, span_status, depth);
        else if (KEY_IS("flags"))
            CHECK(fixed_field(b, 16, value, 4));
        else
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

static const char *const RESOURCE_LEAVE[] = {"entityRefs", NULL};

static int
resource(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("attributes"))
            CHECK(key_values(b, 1, value, depth));
        else if (KEY_IS("droppedAttributesCount"))
            CHECK(varint_field(b, 2, value, UINT32_MAX));
        else
            CHECK(unknown_key(key, n, RESOURCE_LEAVE));
    }
    return OK;
}

static int
scope(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("name"))
            CHECK(string_field(b, 1, value));
        else if (KEY_IS("version"))
            CHECK(string_field(b, 2, value));
        else if (KEY_IS("attributes"))
            CHECK(key_values(b, 3, value, depth));
        else if (KEY_IS("droppedAttributesCount"))
            CHECK(varint_field(b, 4, value, UINT32_MAX));
        else
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

/* ResourceSpans without its "scopeSpans" (the caller encodes those one by one). */
static int
resource_spans_header(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("resource"))
            MESSAGE_FIELD(b, 1, value, resource, depth);
        else if (KEY_IS("schemaUrl"))
            CHECK(string_field(b, 3, value));
        else if (!KEY_IS("scopeSpans"))
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

/* ScopeSpans without its "spans". */
static int
scope_spans_header(Buf *b, PyObject *obj, int depth)
{
    FOR_ITEMS(obj)
    {
        if (KEY_IS("scope"))
            MESSAGE_FIELD(b, 1, value, scope, depth);
        else if (KEY_IS("schemaUrl"))
            CHECK(string_field(b, 3, value));
        else if (!KEY_IS("spans"))
            CHECK(unknown_key(key, n, NULL));
    }
    return OK;
}

/* ---- 4. The module ------------------------------------------------------------------------------ */

static PyObject *
encode_with(int (*encoder)(Buf *, PyObject *, int), PyObject *obj)
{
    Buf b = {NULL, 0, 0};
    int rc = encoder(&b, obj, 0);
    PyObject *out;
    if (rc == OK)
        out = PyBytes_FromStringAndSize(b.len ? (const char *)b.data : "", b.len);
    else if (rc == BAIL && !PyErr_Occurred())
        out = Py_NewRef(Py_None);
    else
        out = NULL;
    PyMem_Free(b.data);
    return out;
}

static PyObject *
py_span(PyObject *self, PyObject *obj)
{
    (void)self;
    return encode_with(span, obj);
}

static PyObject *
py_resource_spans_header(PyObject *self, PyObject *obj)
{
    (void)self;
    return encode_with(resource_spans_header, obj);
}

static PyObject *
py_scope_spans_header(PyObject *self, PyObject *obj)
{
    (void)self;
    return encode_with(scope_spans_header, obj);
}

static PyMethodDef otlpjson_methods[] = {
    {"span", py_span, METH_O, "OTLP/JSON Span (a dict) -> its protobuf encoding, or None: leave it to json_format."},
    {"resource_spans_header", py_resource_spans_header, METH_O,
     "ResourceSpans without scopeSpans -> protobuf, or None: leave it to json_format."},
    {"scope_spans_header", py_scope_spans_header, METH_O,
     "ScopeSpans without spans -> protobuf, or None: leave it to json_format."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef otlpjson_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_otlpjson",
    .m_doc = "OTLP/JSON trace objects (orjson's dicts) -> protobuf wire bytes.",
    .m_size = 0,
    .m_methods = otlpjson_methods,
};

PyMODINIT_FUNC
PyInit__otlpjson(void)
{
    return PyModuleDef_Init(&otlpjson_module);
}
