/*
 * _pgcopy: row tuples -> PostgreSQL binary COPY data (signature, tuples, trailer), in one pass.
 *
 * asyncpg's copy_records_to_table encodes every value through a per-value codec call (datetimes by
 * Python arithmetic, Decimals through as_tuple): about a quarter of the receiver's CPU per span. This
 * module writes the same wire format for the column kinds the signal tables use, straight from the C
 * fields of the values.
 *
 * encode(rows, kinds, uuid_types, start) -> (chunk: bytes, next_start: int) | None
 *   rows:       a list of tuples, each with exactly len(kinds) values
 *   kinds:      bytes, one KIND_* code per column (receiver/storage/pgbinary.py maps type OIDs to them)
 *   uuid_types: types whose instances are 16-byte `bytes` subclasses holding a uuid (pgvalues.Uuid)
 *   start:      the first row of this chunk (the signature comes first when 0)
 * Each call encodes rows until the chunk reaches CHUNK_BYTES; the last one ends with the trailer.
 * None means "not this batch": a value of a type or range this encoder does not take. The caller then
 * lets asyncpg encode the batch, so the values asyncpg refuses (and the errors it raises) stay exactly
 * its own. Nothing here raises for a value; only MemoryError or bad arguments escape.
 *
 * Formats (the send and recv functions of PostgreSQL, big-endian):
 *   bool 1 byte; int2/int4/int8; float8 IEEE bits; text UTF-8; jsonb: version byte 1 + text;
 *   uuid 16 bytes; timestamptz int8 microseconds since 2000-01-01 UTC (the int8 extremes: +-infinity);
 *   numeric: int16 ndigits, int16 weight, uint16 sign, uint16 dscale, ndigits base-10000 digits;
 *   arrays: int32 ndim, int32 has-nulls flag, uint32 element OID, (int32 size, int32 lower bound 1)
 *   per dimension, then each element as (int32 length | -1, bytes); an empty array has ndim 0.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

enum {
    KIND_BOOL = 1,
    KIND_INT2 = 2,
    KIND_INT4 = 3,
    KIND_INT8 = 4,
    KIND_FLOAT8 = 5,
    KIND_TEXT = 6,
    KIND_JSONB = 7,
    KIND_UUID = 8,
    KIND_TIMESTAMPTZ = 9,
    KIND_NUMERIC = 10,
    KIND_BYTEA = 11,
    KIND_TEXT_ARRAY = 12,
    KIND_INT4_ARRAY = 13,
    KIND_INT8_ARRAY = 14,
    KIND_FLOAT8_ARRAY = 15,
    KIND_LAST = 15,
};

#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define OID_FLOAT8 701

/* Text longer than this is left to asyncpg (it refuses over 2**31 - 1 bytes). */
#define MAX_FIELD_BYTES 0x7ffffff0
/* Decimals with more digits or a larger exponent than this are left to asyncpg: the common values
 * (costs) are far inside, and the limits keep every weight and count well inside int16. */
#define MAX_NUMERIC_DIGITS 1000
#define MAX_NUMERIC_EXPONENT 100000
#define NUMERIC_POS 0x0000
#define NUMERIC_NEG 0x4000
#define NUMERIC_NAN 0xC000
#define NUMERIC_PINF 0xD000
#define NUMERIC_NINF 0xF000
#define NUMERIC_MAX_DSCALE 0x3FFF

/* days from 0001-01-01 to 2000-01-01 (proleptic Gregorian: date(2000, 1, 1).toordinal() - 1) */
#define PG_EPOCH_DAYS 730119
/* 9999-12-31 23:59:59.999999 and 0001-01-01 00:00:00 UTC in microseconds since 2000-01-01 */
#define DATETIME_MAX_MICROS INT64_C(252455615999999999)
#define DATETIME_MIN_MICROS INT64_C(-63082281600000000)

typedef struct {
    PyObject *decimal_type; /* decimal.Decimal */
    PyObject *uuid_type;    /* uuid.UUID */
} module_state;

/* Not encodable here: the caller falls back for the whole batch. */
#define UNSUPPORTED 1

/* -- output buffer ------------------------------------------------------------------------------ */

/* One call encodes rows until its output reaches CHUNK_BYTES, at a row boundary: the caller sends each
 * chunk as it comes (one CopyData message), so a batch never exists twice in memory, and chunks of about
 * one size reuse the allocator's freed blocks where a buffer of a whole batch (megabytes) would be fresh
 * pages, faulted in and zeroed, every time. */
#define CHUNK_BYTES (256 * 1024)

typedef struct {
    PyObject *bytes; /* the chunk being written, grown in place (_PyBytes_Resize) */
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Out;

/* A first guess at the chunk's size: a chunk's worth, or less for a few rows (small requests' batches). */
static int
out_init(Out *out, Py_ssize_t rows, Py_ssize_t ncols)
{
    Py_ssize_t cap = CHUNK_BYTES + CHUNK_BYTES / 4;
    if (rows < cap / (2 + 16 * ncols)) {
        cap = 1024 + rows * (2 + 16 * ncols);
    }
    out->bytes = PyBytes_FromStringAndSize(NULL, cap);
    if (out->bytes == NULL) {
        return -1;
    }
    out->data = PyBytes_AS_STRING(out->bytes);
    out->len = 0;
    out->cap = PyBytes_GET_SIZE(out->bytes);
    return 0;
}

static int
out_grow(Out *out, Py_ssize_t need)
{
    if (need > PY_SSIZE_T_MAX / 2 - out->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = out->cap;
    while (cap < out->len + need) {
        cap *= 2;
    }
    if (_PyBytes_Resize(&out->bytes, cap) < 0) {
        return -1; /* out->bytes is NULL now */
    }
    out->data = PyBytes_AS_STRING(out->bytes);
    out->cap = cap;
    return 0;
}

/* Room for `need` more bytes. */
static inline int
out_reserve(Out *out, Py_ssize_t need)
{
    if (out->cap - out->len >= need) {
        return 0;
    }
    return out_grow(out, need);
}

static inline void
put16(Out *out, uint16_t v)
{
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    out->len += 2;
}

static inline void
put32(Out *out, uint32_t v)
{
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    out->len += 4;
}

static inline void
put64(Out *out, uint64_t v)
{
    put32(out, (uint32_t)(v >> 32));
    put32(out, (uint32_t)v);
}

static inline void
set32(Out *out, Py_ssize_t at, uint32_t v)
{
    unsigned char *p = (unsigned char *)out->data + at;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void
put_raw(Out *out, const void *src, Py_ssize_t n)
{
    memcpy(out->data + out->len, src, (size_t)n);
    out->len += n;
}

/* -- values ------------------------------------------------------------------------------------- */

/* The result of one value: 0 written, UNSUPPORTED, or -1 with an exception set (MemoryError). */

static int
put_text(Out *out, PyObject *value, int jsonb)
{
    if (!PyUnicode_Check(value)) {
        return UNSUPPORTED;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(value, &size);
    if (utf8 == NULL) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            return -1;
        }
        PyErr_Clear(); /* lone surrogates: asyncpg raises its own error for them */
        return UNSUPPORTED;
    }
    if (size > MAX_FIELD_BYTES) {
        return UNSUPPORTED;
    }
    if (out_reserve(out, 5 + size) < 0) {
        return -1;
    }
    put32(out, (uint32_t)(size + jsonb));
    if (jsonb) {
        out->data[out->len++] = 1; /* jsonb binary format version */
    }
    put_raw(out, utf8, size);
    return 0;
}

static int
put_long(Out *out, PyObject *value, int bytes)
{
    if (!PyLong_CheckExact(value)) {
        return UNSUPPORTED; /* bools, floats, int subclasses: asyncpg converts them its own way */
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return UNSUPPORTED;
    }
    if ((bytes == 2 && (v < INT16_MIN || v > INT16_MAX)) || (bytes == 4 && (v < INT32_MIN || v > INT32_MAX))) {
        return UNSUPPORTED;
    }
    if (out_reserve(out, 4 + bytes) < 0) {
        return -1;
    }
    put32(out, (uint32_t)bytes);
    if (bytes == 2) {
        put16(out, (uint16_t)(int16_t)v);
    } else if (bytes == 4) {
        put32(out, (uint32_t)(int32_t)v);
    } else {
        put64(out, (uint64_t)v);
    }
    return 0;
}

static int
double_of(PyObject *value, double *d)
{
    if (PyFloat_CheckExact(value)) {
        *d = PyFloat_AS_DOUBLE(value);
        return 0;
    }
    if (PyLong_CheckExact(value)) {
        *d = PyLong_AsDouble(value);
        if (*d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear(); /* too large for a double */
            return UNSUPPORTED;
        }
        return 0;
    }
    return UNSUPPORTED;
}

static int
put_float8(Out *out, PyObject *value)
{
    double d;
    int rc = double_of(value, &d);
    if (rc != 0) {
        return rc;
    }
    if (out_reserve(out, 12) < 0) {
        return -1;
    }
    uint64_t bits;
    memcpy(&bits, &d, 8);
    put32(out, 8);
    put64(out, bits);
    return 0;
}

static int
put_bool(Out *out, PyObject *value)
{
    if (value != Py_True && value != Py_False) {
        return UNSUPPORTED;
    }
    if (out_reserve(out, 5) < 0) {
        return -1;
    }
    put32(out, 1);
    out->data[out->len++] = value == Py_True ? 1 : 0;
    return 0;
}

static int
put_bytea(Out *out, PyObject *value)
{
    if (!PyBytes_CheckExact(value)) {
        return UNSUPPORTED;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(value);
    if (size > MAX_FIELD_BYTES) {
        return UNSUPPORTED;
    }
    if (out_reserve(out, 4 + size) < 0) {
        return -1;
    }
    put32(out, (uint32_t)size);
    put_raw(out, PyBytes_AS_STRING(value), size);
    return 0;
}

/* The last uuid.UUID seen and its bytes: a request's rows share one project id object. */
typedef struct {
    PyObject *object; /* a strong reference, released at the end of the call */
    char bytes[16];
} UuidCache;

static int
put_uuid(Out *out, PyObject *value, PyObject *uuid_types, module_state *state, UuidCache *cache)
{
    const char *src = NULL;
    PyTypeObject *type = Py_TYPE(value);
    Py_ssize_t n = PyTuple_GET_SIZE(uuid_types);
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((PyObject *)type == PyTuple_GET_ITEM(uuid_types, i)) {
            if (!PyBytes_Check(value) || PyBytes_GET_SIZE(value) != 16) {
                return UNSUPPORTED;
            }
            src = PyBytes_AS_STRING(value);
            break;
        }
    }
    if (src == NULL) {
        if ((PyObject *)type != state->uuid_type) {
            return UNSUPPORTED; /* str uuids and others: asyncpg's */
        }
        if (cache->object != value) {
            PyObject *raw = PyObject_GetAttrString(value, "bytes");
            if (raw == NULL) {
                if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
                    return -1;
                }
                PyErr_Clear();
                return UNSUPPORTED;
            }
            if (!PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) != 16) {
                Py_DECREF(raw);
                return UNSUPPORTED;
            }
            memcpy(cache->bytes, PyBytes_AS_STRING(raw), 16);
            Py_DECREF(raw);
            Py_INCREF(value);
            Py_XSETREF(cache->object, value);
        }
        src = cache->bytes;
    }
    if (out_reserve(out, 20) < 0) {
        return -1;
    }
    put32(out, 16);
    put_raw(out, src, 16);
    return 0;
}

/* Days from 0001-01-01 to year-month-day (as date.toordinal() - 1). */
static int64_t
days_before(int year, int month, int day)
{
    static const int before_month[13] = {0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t y = year - 1;
    int64_t days = y * 365 + y / 4 - y / 100 + y / 400 + before_month[month] + day - 1;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month > 2 && leap) {
        days += 1;
    }
    return days;
}

static int
put_timestamptz(Out *out, PyObject *value)
{
    /* Exact datetimes in UTC only (what the converters make): other zones, naive datetimes (asyncpg
     * reads them as local time) and subclasses go to asyncpg. */
    if (!PyDateTime_CheckExact(value) || PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC) {
        return UNSUPPORTED;
    }
    int64_t days = days_before(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value)) -
                   PG_EPOCH_DAYS;
    int64_t seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(value) * 3600 + PyDateTime_DATE_GET_MINUTE(value) * 60 +
                      PyDateTime_DATE_GET_SECOND(value);
    int64_t micros = seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(value);
    /* As asyncpg does: datetime's last and first instants stand for PostgreSQL's infinity and -infinity. */
    if (micros == DATETIME_MAX_MICROS) {
        micros = INT64_MAX;
    } else if (micros == DATETIME_MIN_MICROS) {
        micros = INT64_MIN;
    }
    if (out_reserve(out, 12) < 0) {
        return -1;
    }
    put32(out, 8);
    put64(out, (uint64_t)micros);
    return 0;
}

static inline int64_t
floor_div4(int64_t x)
{
    return x >= 0 ? x / 4 : -((-x + 3) / 4);
}

/* A Decimal from its str(): [-](digits[.digits][E(+|-)digits] | Infinity | NaN... | sNaN...). */
static int
put_numeric(Out *out, PyObject *value, module_state *state)
{
    if ((PyObject *)Py_TYPE(value) != state->decimal_type) {
        return UNSUPPORTED;
    }
    PyObject *text = PyObject_Str(value);
    if (text == NULL) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            return -1;
        }
        PyErr_Clear();
        return UNSUPPORTED;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        Py_DECREF(text);
        PyErr_Clear();
        return UNSUPPORTED;
    }
    const char *end = s + n;
    int negative = 0;
    uint16_t sign;
    int16_t weight = 0;
    uint16_t dscale = 0;
    uint16_t groups[MAX_NUMERIC_DIGITS / 4 + 2];
    int ngroups = 0;
    int rc = 0;

    if (s < end && *s == '-') {
        negative = 1;
        s++;
    }
    if (s < end && (*s == 'N' || *s == 's')) {
        sign = NUMERIC_NAN;
    } else if (s < end && *s == 'I') {
        sign = negative ? NUMERIC_NINF : NUMERIC_PINF;
    } else {
        /* the coefficient's digits, leading zeros dropped, and the count after the point */
        char digits[MAX_NUMERIC_DIGITS];
        int ndigits = 0;
        int64_t fraction = 0;
        int seen_point = 0;
        for (; s < end && ((*s >= '0' && *s <= '9') || *s == '.'); s++) {
            if (*s == '.') {
                seen_point = 1;
                continue;
            }
            fraction += seen_point;
            if (ndigits == 0 && *s == '0') {
                continue;
            }
            if (ndigits == MAX_NUMERIC_DIGITS) {
                rc = UNSUPPORTED;
                goto done;
            }
            digits[ndigits++] = (char)(*s - '0');
        }
        int64_t exponent = 0;
        if (s < end && (*s == 'E' || *s == 'e')) {
            s++;
            int exp_negative = 0;
            if (s < end && (*s == '+' || *s == '-')) {
                exp_negative = *s == '-';
                s++;
            }
            if (s == end) {
                rc = UNSUPPORTED;
                goto done;
            }
            for (; s < end && *s >= '0' && *s <= '9'; s++) {
                exponent = exponent * 10 + (*s - '0');
                if (exponent > 10 * MAX_NUMERIC_EXPONENT) { /* far past any limit below, no overflow */
                    rc = UNSUPPORTED;
                    goto done;
                }
            }
            if (exp_negative) {
                exponent = -exponent;
            }
        }
        if (s != end) {
            rc = UNSUPPORTED; /* not a form str(Decimal) makes */
            goto done;
        }
        exponent -= fraction; /* value = digits x 10^exponent */
        if (exponent < -NUMERIC_MAX_DSCALE || exponent > MAX_NUMERIC_EXPONENT) {
            rc = UNSUPPORTED; /* asyncpg refuses a scale beyond 16383 */
            goto done;
        }
        dscale = exponent < 0 ? (uint16_t)-exponent : 0;
        sign = negative ? NUMERIC_NEG : NUMERIC_POS;
        if (ndigits == 0) {
            sign = NUMERIC_POS; /* zero: no digits, weight 0, as PostgreSQL sends it */
        } else {
            /* digit i has decimal power exponent + ndigits - 1 - i, base-10000 group floor(power / 4) */
            int64_t top = floor_div4(exponent + ndigits - 1);
            int64_t bottom = floor_div4(exponent);
            if (top - bottom + 1 > (int64_t)(sizeof(groups) / sizeof(groups[0])) || top > INT16_MAX ||
                top < INT16_MIN) {
                rc = UNSUPPORTED;
                goto done;
            }
            weight = (int16_t)top;
            ngroups = (int)(top - bottom + 1);
            memset(groups, 0, sizeof(groups[0]) * (size_t)ngroups);
            static const uint16_t scale[4] = {1, 10, 100, 1000};
            for (int i = 0; i < ndigits; i++) {
                int64_t power = exponent + ndigits - 1 - i;
                int64_t group = floor_div4(power);
                groups[top - group] += (uint16_t)(digits[i] * scale[power - group * 4]);
            }
            while (ngroups > 0 && groups[ngroups - 1] == 0) {
                ngroups--;
            }
        }
    }
    if (out_reserve(out, 12 + 2 * ngroups) < 0) {
        rc = -1;
        goto done;
    }
    put32(out, (uint32_t)(8 + 2 * ngroups));
    put16(out, (uint16_t)ngroups);
    put16(out, (uint16_t)weight);
    put16(out, sign);
    put16(out, dscale);
    for (int i = 0; i < ngroups; i++) {
        put16(out, groups[i]);
    }
done:
    Py_DECREF(text);
    return rc;
}

/* One-dimensional arrays of text, int4, int8 or float8 (a list or tuple; None elements are NULLs). */
static int
put_array(Out *out, PyObject *value, int kind)
{
    if (!PyList_CheckExact(value) && !PyTuple_CheckExact(value)) {
        return UNSUPPORTED;
    }
    PyObject **items = PySequence_Fast_ITEMS(value);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(value);
    if (n > INT32_MAX / 8) {
        return UNSUPPORTED;
    }
    uint32_t oid = kind == KIND_TEXT_ARRAY   ? OID_TEXT
                   : kind == KIND_INT4_ARRAY ? OID_INT4
                   : kind == KIND_INT8_ARRAY ? OID_INT8
                                             : OID_FLOAT8;
    if (out_reserve(out, 24) < 0) {
        return -1;
    }
    Py_ssize_t start = out->len;
    put32(out, 0); /* the length, set below */
    put32(out, n > 0 ? 1 : 0);
    Py_ssize_t flags_at = out->len;
    put32(out, 0); /* has nulls, set below */
    put32(out, oid);
    if (n > 0) {
        put32(out, (uint32_t)n);
        put32(out, 1);
    }
    int nulls = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        int rc;
        if (item == Py_None) {
            if (out_reserve(out, 4) < 0) {
                return -1;
            }
            put32(out, UINT32_MAX);
            nulls = 1;
            continue;
        }
        switch (kind) {
        case KIND_TEXT_ARRAY:
            rc = PyUnicode_Check(item) ? put_text(out, item, 0) : UNSUPPORTED;
            break;
        case KIND_INT4_ARRAY:
            rc = put_long(out, item, 4);
            break;
        case KIND_INT8_ARRAY:
            rc = put_long(out, item, 8);
            break;
        default:
            rc = put_float8(out, item);
            break;
        }
        if (rc != 0) {
            return rc;
        }
    }
    Py_ssize_t length = out->len - start - 4;
    if (length > MAX_FIELD_BYTES) {
        return UNSUPPORTED;
    }
    set32(out, start, (uint32_t)length);
    set32(out, flags_at, (uint32_t)nulls);
    return 0;
}

static int
put_value(Out *out, PyObject *value, int kind, PyObject *uuid_types, module_state *state, UuidCache *cache)
{
    switch (kind) {
    case KIND_BOOL:
        return put_bool(out, value);
    case KIND_INT2:
        return put_long(out, value, 2);
    case KIND_INT4:
        return put_long(out, value, 4);
    case KIND_INT8:
        return put_long(out, value, 8);
    case KIND_FLOAT8:
        return put_float8(out, value);
    case KIND_TEXT:
        return put_text(out, value, 0);
    case KIND_JSONB:
        return put_text(out, value, 1);
    case KIND_UUID:
        return put_uuid(out, value, uuid_types, state, cache);
    case KIND_TIMESTAMPTZ:
        return put_timestamptz(out, value);
    case KIND_NUMERIC:
        return put_numeric(out, value, state);
    case KIND_BYTEA:
        return put_bytea(out, value);
    default:
        return put_array(out, value, kind);
    }
}

/* -- encode() ----------------------------------------------------------------------------------- */

static const char copy_signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};

PyDoc_STRVAR(encode_doc, "encode(rows, kinds, uuid_types, start, /)\n--\n\n"
                         "The next chunk of PostgreSQL binary COPY data for `rows` (a list of tuples) with one "
                         "KIND_* code per column in `kinds`: (bytes, next_start), the rows from `start` until "
                         "the chunk reaches CHUNK_BYTES (with the signature when start is 0, the trailer when "
                         "next_start is len(rows)), or None when a value is one this encoder leaves to asyncpg.");

static PyObject *
encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[0]) || !PyBytes_Check(args[1]) || !PyTuple_Check(args[2]) ||
        !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "encode(rows: list, kinds: bytes, uuid_types: tuple, start: int)");
        return NULL;
    }
    module_state *state = PyModule_GetState(module);
    PyObject *rows = args[0];
    const unsigned char *kinds = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t ncols = PyBytes_GET_SIZE(args[1]);
    PyObject *uuid_types = args[2];
    Py_ssize_t start = PyLong_AsSsize_t(args[3]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || start > PyList_GET_SIZE(rows)) {
        PyErr_SetString(PyExc_ValueError, "start: 0 to len(rows)");
        return NULL;
    }
    if (ncols < 1 || ncols > 1600) {
        PyErr_SetString(PyExc_ValueError, "kinds: 1 to 1600 columns");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        if (kinds[c] < 1 || kinds[c] > KIND_LAST) {
            PyErr_Format(PyExc_ValueError, "kinds[%zd]: unknown kind %d", c, (int)kinds[c]);
            return NULL;
        }
    }
    Out out;
    if (out_init(&out, PyList_GET_SIZE(rows) - start, ncols) < 0) {
        return NULL;
    }
    if (start == 0) {
        put_raw(&out, copy_signature, 11);
        put32(&out, 0); /* flags */
        put32(&out, 0); /* header extension length */
    }
    UuidCache cache = {NULL, {0}};
    Py_ssize_t r = start;
    /* The row list may change size while a uuid.UUID's `bytes` (Python code) runs: index it afresh. */
    for (; r < PyList_GET_SIZE(rows) && out.len < CHUNK_BYTES; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != ncols) {
            goto unsupported;
        }
        Py_INCREF(row);
        if (out_reserve(&out, 2) < 0) {
            Py_DECREF(row);
            goto error;
        }
        put16(&out, (uint16_t)ncols);
        for (Py_ssize_t c = 0; c < ncols; c++) {
            PyObject *value = PyTuple_GET_ITEM(row, c);
            int rc;
            if (value == Py_None) {
                rc = out_reserve(&out, 4);
                if (rc == 0) {
                    put32(&out, UINT32_MAX);
                }
            } else {
                rc = put_value(&out, value, kinds[c], uuid_types, state, &cache);
            }
            if (rc != 0) {
                Py_DECREF(row);
                if (rc < 0) {
                    goto error;
                }
                goto unsupported;
            }
        }
        Py_DECREF(row);
    }
    if (r == PyList_GET_SIZE(rows)) {
        if (out_reserve(&out, 2) < 0) {
            goto error;
        }
        put16(&out, UINT16_MAX); /* trailer: -1 */
    }
    Py_CLEAR(cache.object);
    if (_PyBytes_Resize(&out.bytes, out.len) < 0) {
        return NULL;
    }
    PyObject *result = Py_BuildValue("(Nn)", out.bytes, r);
    return result;
unsupported:
    Py_XDECREF(cache.object);
    Py_XDECREF(out.bytes);
    Py_RETURN_NONE;
error:
    Py_XDECREF(cache.object);
    Py_XDECREF(out.bytes);
    return NULL;
}

static PyMethodDef pgcopy_functions[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL, encode_doc},
    {NULL, NULL, 0, NULL},
};

static int
pgcopy_exec(PyObject *module)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return -1;
    }
    module_state *state = PyModule_GetState(module);
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL) {
        return -1;
    }
    state->decimal_type = PyObject_GetAttrString(decimal, "Decimal");
    Py_DECREF(decimal);
    if (state->decimal_type == NULL) {
        return -1;
    }
    PyObject *uuid = PyImport_ImportModule("uuid");
    if (uuid == NULL) {
        return -1;
    }
    state->uuid_type = PyObject_GetAttrString(uuid, "UUID");
    Py_DECREF(uuid);
    if (state->uuid_type == NULL) {
        return -1;
    }
    static const struct {
        const char *name;
        int value;
    } constants[] = {
        {"KIND_BOOL", KIND_BOOL},
        {"KIND_INT2", KIND_INT2},
        {"KIND_INT4", KIND_INT4},
        {"KIND_INT8", KIND_INT8},
        {"KIND_FLOAT8", KIND_FLOAT8},
        {"KIND_TEXT", KIND_TEXT},
        {"KIND_JSONB", KIND_JSONB},
        {"KIND_UUID", KIND_UUID},
        {"KIND_TIMESTAMPTZ", KIND_TIMESTAMPTZ},
        {"KIND_NUMERIC", KIND_NUMERIC},
        {"KIND_BYTEA", KIND_BYTEA},
        {"KIND_TEXT_ARRAY", KIND_TEXT_ARRAY},
        {"KIND_INT4_ARRAY", KIND_INT4_ARRAY},
        {"KIND_INT8_ARRAY", KIND_INT8_ARRAY},
        {"KIND_FLOAT8_ARRAY", KIND_FLOAT8_ARRAY},
    };
    if (PyModule_AddIntConstant(module, "CHUNK_BYTES", CHUNK_BYTES) < 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++) {
        if (PyModule_AddIntConstant(module, constants[i].name, constants[i].value) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
pgcopy_traverse(PyObject *module, visitproc visit, void *arg)
{
    module_state *state = PyModule_GetState(module);
    Py_VISIT(state->decimal_type);
    Py_VISIT(state->uuid_type);
    return 0;
}

static int
pgcopy_clear(PyObject *module)
{
    module_state *state = PyModule_GetState(module);
    Py_CLEAR(state->decimal_type);
    Py_CLEAR(state->uuid_type);
    return 0;
}

static void
pgcopy_free(void *module)
{
    pgcopy_clear((PyObject *)module);
}

static PyModuleDef_Slot pgcopy_slots[] = {
    {Py_mod_exec, pgcopy_exec},
    {0, NULL},
};

static struct PyModuleDef pgcopy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "receiver.storage._pgcopy",
    .m_doc = "Row tuples -> PostgreSQL binary COPY data (see receiver/storage/pgbinary.py).",
    .m_size = sizeof(module_state),
    .m_methods = pgcopy_functions,
    .m_slots = pgcopy_slots,
    .m_traverse = pgcopy_traverse,
    .m_clear = pgcopy_clear,
    .m_free = pgcopy_free,
};

PyMODINIT_FUNC
PyInit__pgcopy(void)
{
    return PyModuleDef_Init(&pgcopy_module);
}
