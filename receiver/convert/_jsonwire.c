/*
 * _jsonwire: an OTLP/JSON request body (bytes) -> the same request as protobuf (bytes), in C, without
 * the GIL and without a Python object in between. Traces, logs and metrics.
 *
 * Why: OTLP/JSON went through orjson (a dict per object) and then json_format or the per-span C encoder
 * (receiver/convert/_otlpjson.c) before the native protobuf decoders read it; parsing into Python objects
 * alone cost more than decoding the protobuf. This module reads the JSON text once and writes protobuf.
 *
 * The contract is the one _otlpjson keeps: answer only when certain. It handles the forms well-formed
 * OTLP/JSON holds (camelCase keys, hex ids, int64 as a number or a decimal string, enums as numbers,
 * doubles as numbers or "NaN" / "Infinity" / "-Infinity", AnyValue with arrays and kvlists, unknown keys
 * ignored as json_format with ignore_unknown_fields ignores them, null as "unset" where json_format
 * clears the field). For anything else - a JSON error, a duplicate key, an enum name, bytesValue, a
 * snake_case key, a value out of its field's range, a lone surrogate, nesting deeper than MAX_DEPTH - it
 * returns None and the caller takes the reference path (orjson, _otlpjson, json_format), which accepts
 * and refuses exactly what it did, with the same messages. So one bad value still rejects only its item:
 * the whole request takes the path that knows how.
 *
 * What it must agree on with that path is documented where it is decided; tests/test_jsonwire.py holds
 * it to json_format message by message and row by row.
 *
 * Bounds: the output is at most OUT_FACTOR x the input + OUT_SLACK bytes (else None: cannot happen for
 * input it accepts, as no JSON form it accepts grows more than 4x), recursion is bounded by MAX_DEPTH,
 * and the work runs with the GIL released (the input is a buffer held for the call).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64 /* JSON objects and arrays; well below upb's 100 nested messages */
#define OUT_FACTOR 6
#define OUT_SLACK 1024

#define OK 0
#define BAIL 1

/* ---- 1. Output ---------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t len, cap, limit;
    int nomem;
} Out;

static int
grow(Out *o, size_t more)
{
    if (o->len + more <= o->cap)
        return OK;
    size_t need = o->len + more;
    if (need > o->limit)
        return BAIL;
    size_t cap = o->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > o->limit)
        cap = o->limit;
    uint8_t *data = PyMem_RawRealloc(o->data, cap);
    if (data == NULL) {
        o->nomem = 1;
        return BAIL;
    }
    o->data = data;
    o->cap = cap;
    return OK;
}

#define NEED(o, n)                                                                                       \
    do {                                                                                                 \
        if (grow((o), (n)))                                                                              \
            return BAIL;                                                                                 \
    } while (0)

static inline void
raw_varint(Out *o, uint64_t v)
{
    while (v >= 0x80) {
        o->data[o->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o->data[o->len++] = (uint8_t)v;
}

static int
put_varint_field(Out *o, uint32_t field, uint64_t v)
{
    NEED(o, 15);
    raw_varint(o, (uint64_t)field << 3);
    raw_varint(o, v);
    return OK;
}

static int
put_fixed_field(Out *o, uint32_t field, uint64_t v, int width)
{
    NEED(o, 5 + (size_t)width);
    raw_varint(o, ((uint64_t)field << 3) | (width == 8 ? 1 : 5));
    for (int i = 0; i < width; i++)
        o->data[o->len++] = (uint8_t)(v >> (8 * i));
    return OK;
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

/* A length-delimited field: open() writes its tag and one byte for its length; close() writes the
 * length, moving the content when it needs more than one byte. */
static int
open_field(Out *o, uint32_t field, size_t *start)
{
    NEED(o, 6);
    raw_varint(o, ((uint64_t)field << 3) | 2);
    o->data[o->len++] = 0;
    *start = o->len;
    return OK;
}

static int
close_field(Out *o, size_t start)
{
    size_t n = o->len - start;
    int size = varint_size(n);
    if (size > 1) {
        NEED(o, (size_t)size - 1);
        memmove(o->data + start + size - 1, o->data + start, n);
    }
    o->len = start - 1;
    raw_varint(o, n);
    o->len = start - 1 + (size_t)size + n;
    return OK;
}

/* ---- 2. JSON text --------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    int depth;
} In;

#define CHECK(expr)                                                                                      \
    do {                                                                                                 \
        if ((expr) != OK)                                                                                \
            return BAIL;                                                                                 \
    } while (0)

static inline void
skip_ws(In *in)
{
    while (in->p < in->end && (*in->p == ' ' || *in->p == '\n' || *in->p == '\r' || *in->p == '\t'))
        in->p++;
}

/* The next non-blank byte is `c`: consume it. */
static inline int
expect(In *in, uint8_t c)
{
    skip_ws(in);
    if (in->p >= in->end || *in->p != c)
        return BAIL;
    in->p++;
    return OK;
}

static inline int
peek(In *in)
{
    skip_ws(in);
    return in->p < in->end ? *in->p : -1;
}

static int
hex4(const uint8_t *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return BAIL;
    }
    *out = v;
    return OK;
}

/* One UTF-8 sequence at p (< end) that starts with a byte >= 0x80: its length, or 0 if it is not valid
 * UTF-8 (overlong, a surrogate, past U+10FFFF, truncated) - which orjson refuses. */
static int
utf8_sequence(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    int n;
    uint32_t min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else
        return 0;
    if (end - p < n)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static void
put_utf8(uint8_t *dst, size_t *len, uint32_t cp)
{
    if (cp < 0x80)
        dst[(*len)++] = (uint8_t)cp;
    else if (cp < 0x800) {
        dst[(*len)++] = (uint8_t)(0xC0 | (cp >> 6));
        dst[(*len)++] = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        dst[(*len)++] = (uint8_t)(0xE0 | (cp >> 12));
        dst[(*len)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        dst[(*len)++] = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        dst[(*len)++] = (uint8_t)(0xF0 | (cp >> 18));
        dst[(*len)++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        dst[(*len)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        dst[(*len)++] = (uint8_t)(0x80 | (cp & 0x3F));
    }
}

/* Eight bytes of plain string text: ASCII, no control character, no quote, no backslash (the usual
 * case, tested a word at a time). */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline int
plain8(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    uint64_t quote = w ^ (ONES * '"'), backslash = w ^ (ONES * '\\');
    uint64_t special = ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((w - ONES * 0x20) & ~w) | w;
    return (special & HIGHS) == 0;
}

/* A JSON string (the opening quote is next): unescaped UTF-8 into dst (room: the raw length, as no
 * escape is longer unescaped than written), or, with dst NULL, only validated. A lone surrogate escape,
 * invalid UTF-8 or a control character -> BAIL (orjson refuses all three). */
static int
read_string(In *in, uint8_t *dst, size_t *len)
{
    CHECK(expect(in, '"'));
    const uint8_t *p = in->p, *end = in->end;
    size_t n = 0;
    for (;;) {
        const uint8_t *run = p;
        while (end - p >= 8 && plain8(p))
            p += 8;
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80)
            p++;
        if (dst && p > run) {
            memcpy(dst + n, run, (size_t)(p - run));
        }
        n += (size_t)(p - run);
        if (p >= end)
            return BAIL;
        uint8_t c = *p;
        if (c == '"') {
            in->p = p + 1;
            *len = n;
            return OK;
        }
        if (c < 0x20)
            return BAIL;
        if (c >= 0x80) {
            int k = utf8_sequence(p, end);
            if (k == 0)
                return BAIL;
            if (dst)
                memcpy(dst + n, p, (size_t)k);
            n += (size_t)k;
            p += k;
            continue;
        }
        /* an escape */
        if (end - p < 2)
            return BAIL;
        uint8_t e = p[1];
        uint32_t cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (end - p < 6 || hex4(p + 2, &cp))
                return BAIL;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return BAIL;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t low;
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &low) || low < 0xDC00 ||
                    low > 0xDFFF)
                    return BAIL;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                p += 6;
            }
            p += 4;
            break;
        default:
            return BAIL;
        }
        p += 2;
        if (dst) {
            put_utf8(dst, &n, cp);
        } else {
            n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        }
    }
}

/* A JSON number's text, classified. */
typedef struct {
    const uint8_t *text;
    size_t len;
    int integer;     /* no fraction, no exponent */
    int negative;
    int fits;        /* integer and its magnitude fits 64 bits */
    uint64_t mag;    /* its magnitude */
} Number;

static int
read_number(In *in, Number *num)
{
    skip_ws(in);
    const uint8_t *p = in->p, *end = in->end;
    num->text = p;
    num->negative = 0;
    num->integer = 1;
    num->fits = 1;
    num->mag = 0;
    if (p < end && *p == '-') {
        num->negative = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return BAIL;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return BAIL; /* a leading zero: orjson refuses */
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            uint64_t d = (uint64_t)(*p - '0');
            if (num->mag > (UINT64_MAX - d) / 10)
                num->fits = 0;
            else
                num->mag = num->mag * 10 + d;
            p++;
        }
    }
    if (p < end && *p == '.') {
        num->integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return BAIL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        num->integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return BAIL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (!num->integer)
        num->fits = 0;
    num->len = (size_t)(p - num->text);
    in->p = p;
    return OK;
}

/* orjson's reading of an integer past 64 bits or a number with a fraction or exponent: the nearest
 * double. (Callers reach here with the C locale's decimal point checked: see transcode().) Infinite ->
 * BAIL: orjson refuses the document. */
static int
number_as_double(const Number *num, double *out)
{
    if (num->integer && num->fits) {
        if (num->negative) {
            /* orjson makes an int of an integer within int64 (then float() rounds it); past int64 a
             * double of the text, as here. "-0" is the int 0: +0.0. */
            if (num->mag == 0) {
                *out = 0.0;
                return OK;
            }
            if (num->mag <= (uint64_t)INT64_MAX + 1) {
                *out = num->mag == (uint64_t)INT64_MAX + 1 ? -9223372036854775808.0 : -(double)(int64_t)num->mag;
                return OK;
            }
        } else {
            *out = (double)num->mag;
            return OK;
        }
    }
    char small[64];
    char *text = small;
    if (num->len >= sizeof small) {
        text = PyMem_RawMalloc(num->len + 1);
        if (text == NULL)
            return BAIL;
    }
    memcpy(text, num->text, num->len);
    text[num->len] = 0;
    double v = strtod(text, NULL);
    if (text != small)
        PyMem_RawFree(text);
    if (v == HUGE_VAL || v == -HUGE_VAL)
        return BAIL;
    *out = v;
    return OK;
}

static int skip_value(In *in);

static int
skip_container(In *in, uint8_t close, int object)
{
    if (++in->depth > MAX_DEPTH)
        return BAIL;
    in->p++;
    if (peek(in) == close) {
        in->p++;
        in->depth--;
        return OK;
    }
    for (;;) {
        if (object) {
            size_t n;
            CHECK(read_string(in, NULL, &n));
            CHECK(expect(in, ':'));
        }
        CHECK(skip_value(in));
        int c = peek(in);
        if (c == ',') {
            in->p++;
            continue;
        }
        if (c != close)
            return BAIL;
        in->p++;
        in->depth--;
        return OK;
    }
}

static int
literal(In *in, const char *word, size_t n)
{
    if ((size_t)(in->end - in->p) < n || memcmp(in->p, word, n) != 0)
        return BAIL;
    in->p += n;
    return OK;
}

/* Any JSON value, validated as orjson would and skipped. */
static int
skip_value(In *in)
{
    int c = peek(in);
    size_t n;
    Number num;
    double d;
    switch (c) {
    case '{': return skip_container(in, '}', 1);
    case '[': return skip_container(in, ']', 0);
    case '"': return read_string(in, NULL, &n);
    case 't': return literal(in, "true", 4);
    case 'f': return literal(in, "false", 5);
    case 'n': return literal(in, "null", 4);
    default:
        CHECK(read_number(in, &num));
        /* past 64 bits or not an integer: orjson makes a double of it, and refuses it if infinite */
        return num.fits ? OK : number_as_double(&num, &d);
    }
}

/* ---- 3. The schema: OTLP messages as json_format reads them ------------------------------------- */

enum kind {
    K_STRING,      /* string */
    K_HEX,         /* bytes, OTLP/JSON hex (spans, links): anything else refuses the item -> BAIL */
    K_HEX_LENIENT, /* bytes, hex (logs, exemplars): a value that is not hex is dropped */
    K_UINT32,      /* varint */
    K_FIXED32,
    K_FIXED64,
    K_INT64,    /* varint */
    K_SFIXED64,
    K_SINT32,   /* zigzag varint */
    K_ENUM,     /* a number or one of the enum's names */
    K_INT32,    /* varint, sign-extended */
    K_DOUBLE,
    K_BOOL,
    K_MESSAGE,
    K_REPEATED, /* repeated message */
    K_PACKED_DOUBLE,
    K_PACKED_FIXED64,
    K_PACKED_UINT64,
    K_BYTES, /* bytes, base64 (AnyValue.bytesValue) */
    K_BAIL, /* a field this module leaves to json_format (bytesValue, entityRefs, *Strindex, ...) */
};

#define PRESENCE 1      /* written even when zero or empty (a oneof member, a proto3 `optional`) */
#define ONEOF 2         /* a member of the message's one oneof: two -> BAIL (json_format refuses) */
#define NULL_BAIL 4     /* null -> BAIL (json_format clears a oneof member: left to it) */
#define COUNT_ITEM 8    /* each element counts as an item (limits.max_items_per_request) */
#define COUNT_CONTAINER 16

typedef struct Message Message;
typedef struct {
    const char *name;
    int32_t number;
} EnumValue;

typedef struct {
    const char *name;
    uint32_t number;
    uint8_t kind;
    uint8_t flags;
    const Message *sub;
    const EnumValue *values; /* K_ENUM: the names json_format reads (values_by_name) */
} Field;

struct Message {
    const char *name; /* the protobuf full name (tests compare the schema with the installed one) */
    const Field *fields;
};

#define END {NULL, 0, 0, 0, NULL, NULL}

static const Message ANY_VALUE, KEY_VALUE;

static const Field ARRAY_VALUE_FIELDS[] = {{"values", 1, K_REPEATED, 0, &ANY_VALUE, NULL}, END};
static const Message ARRAY_VALUE = {"opentelemetry.proto.common.v1.ArrayValue", ARRAY_VALUE_FIELDS};
static const Field KVLIST_FIELDS[] = {{"values", 1, K_REPEATED, 0, &KEY_VALUE, NULL}, END};
static const Message KVLIST = {"opentelemetry.proto.common.v1.KeyValueList", KVLIST_FIELDS};

#define ANY (PRESENCE | ONEOF | NULL_BAIL)
static const Field ANY_VALUE_FIELDS[] = {
    {"stringValue", 1, K_STRING, ANY, NULL, NULL},
    {"boolValue", 2, K_BOOL, ANY, NULL, NULL},
    {"intValue", 3, K_INT64, ANY, NULL, NULL},
    {"doubleValue", 4, K_DOUBLE, ANY, NULL, NULL},
    {"arrayValue", 5, K_MESSAGE, ANY, &ARRAY_VALUE, NULL},
    {"kvlistValue", 6, K_MESSAGE, ANY, &KVLIST, NULL},
    {"bytesValue", 7, K_BYTES, ANY, NULL, NULL},
    {"stringValueStrindex", 8, K_INT32, ANY, NULL, NULL},
    END,
};
static const Message ANY_VALUE = {"opentelemetry.proto.common.v1.AnyValue", ANY_VALUE_FIELDS};

static const Field KEY_VALUE_FIELDS[] = {
    {"key", 1, K_STRING, 0, NULL, NULL},
    {"value", 2, K_MESSAGE, 0, &ANY_VALUE, NULL},
    {"keyStrindex", 3, K_INT32, 0, NULL, NULL},
    END,
};
static const Message KEY_VALUE = {"opentelemetry.proto.common.v1.KeyValue", KEY_VALUE_FIELDS};

static const Field RESOURCE_FIELDS[] = {
    {"attributes", 1, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"droppedAttributesCount", 2, K_UINT32, 0, NULL, NULL},
    {"entityRefs", 3, K_BAIL, 0, NULL, NULL},
    END,
};
static const Message RESOURCE = {"opentelemetry.proto.resource.v1.Resource", RESOURCE_FIELDS};

static const Field SCOPE_FIELDS[] = {
    {"name", 1, K_STRING, 0, NULL, NULL},
    {"version", 2, K_STRING, 0, NULL, NULL},
    {"attributes", 3, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"droppedAttributesCount", 4, K_UINT32, 0, NULL, NULL},
    END,
};
static const Message SCOPE = {"opentelemetry.proto.common.v1.InstrumentationScope", SCOPE_FIELDS};

/* Enum names, as the installed descriptors have them (tests/test_jsonwire.py compares). */
static const EnumValue SPAN_KINDS[] = {
    {"SPAN_KIND_UNSPECIFIED", 0}, {"SPAN_KIND_INTERNAL", 1}, {"SPAN_KIND_SERVER", 2}, {"SPAN_KIND_CLIENT", 3},
    {"SPAN_KIND_PRODUCER", 4},    {"SPAN_KIND_CONSUMER", 5}, {NULL, 0},
};
static const EnumValue STATUS_CODES[] = {
    {"STATUS_CODE_UNSET", 0}, {"STATUS_CODE_OK", 1}, {"STATUS_CODE_ERROR", 2}, {NULL, 0},
};
static const EnumValue SEVERITY_NUMBERS[] = {
    {"SEVERITY_NUMBER_UNSPECIFIED", 0}, {"SEVERITY_NUMBER_TRACE", 1}, {"SEVERITY_NUMBER_TRACE2", 2},
    {"SEVERITY_NUMBER_TRACE3", 3},      {"SEVERITY_NUMBER_TRACE4", 4}, {"SEVERITY_NUMBER_DEBUG", 5},
    {"SEVERITY_NUMBER_DEBUG2", 6},      {"SEVERITY_NUMBER_DEBUG3", 7}, {"SEVERITY_NUMBER_DEBUG4", 8},
    {"SEVERITY_NUMBER_INFO", 9},        {"SEVERITY_NUMBER_INFO2", 10}, {"SEVERITY_NUMBER_INFO3", 11},
    {"SEVERITY_NUMBER_INFO4", 12},      {"SEVERITY_NUMBER_WARN", 13},  {"SEVERITY_NUMBER_WARN2", 14},
    {"SEVERITY_NUMBER_WARN3", 15},      {"SEVERITY_NUMBER_WARN4", 16}, {"SEVERITY_NUMBER_ERROR", 17},
    {"SEVERITY_NUMBER_ERROR2", 18},     {"SEVERITY_NUMBER_ERROR3", 19}, {"SEVERITY_NUMBER_ERROR4", 20},
    {"SEVERITY_NUMBER_FATAL", 21},      {"SEVERITY_NUMBER_FATAL2", 22}, {"SEVERITY_NUMBER_FATAL3", 23},
    {"SEVERITY_NUMBER_FATAL4", 24},     {NULL, 0},
};
static const EnumValue TEMPORALITIES[] = {
    {"AGGREGATION_TEMPORALITY_UNSPECIFIED", 0}, {"AGGREGATION_TEMPORALITY_DELTA", 1},
    {"AGGREGATION_TEMPORALITY_CUMULATIVE", 2},  {NULL, 0},
};

/* -- traces -- */

static const Field STATUS_FIELDS[] = {{"message", 2, K_STRING, 0, NULL, NULL}, {"code", 3, K_ENUM, 0, NULL, STATUS_CODES}, END};
static const Message STATUS = {"opentelemetry.proto.trace.v1.Status", STATUS_FIELDS};

static const Field EVENT_FIELDS[] = {
    {"timeUnixNano", 1, K_FIXED64, 0, NULL, NULL},
    {"name", 2, K_STRING, 0, NULL, NULL},
    {"attributes", 3, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"droppedAttributesCount", 4, K_UINT32, 0, NULL, NULL},
    END,
};
static const Message EVENT = {"opentelemetry.proto.trace.v1.Span.Event", EVENT_FIELDS};

static const Field LINK_FIELDS[] = {
    {"traceId", 1, K_HEX, 0, NULL, NULL},
    {"spanId", 2, K_HEX, 0, NULL, NULL},
    {"traceState", 3, K_STRING, 0, NULL, NULL},
    {"attributes", 4, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"droppedAttributesCount", 5, K_UINT32, 0, NULL, NULL},
    {"flags", 6, K_FIXED32, 0, NULL, NULL},
    /* not a Link field, but the reference converts it from hex too (and refuses the span if it is not) */
    {"parentSpanId", 0, K_BAIL, 0, NULL, NULL},
    END,
};
static const Message LINK = {"opentelemetry.proto.trace.v1.Span.Link", LINK_FIELDS};

static const Field SPAN_FIELDS[] = {
    {"traceId", 1, K_HEX, 0, NULL, NULL},
    {"spanId", 2, K_HEX, 0, NULL, NULL},
    {"traceState", 3, K_STRING, 0, NULL, NULL},
    {"parentSpanId", 4, K_HEX, 0, NULL, NULL},
    {"flags", 16, K_FIXED32, 0, NULL, NULL},
    {"name", 5, K_STRING, 0, NULL, NULL},
    {"kind", 6, K_ENUM, 0, NULL, SPAN_KINDS},
    {"startTimeUnixNano", 7, K_FIXED64, 0, NULL, NULL},
    {"endTimeUnixNano", 8, K_FIXED64, 0, NULL, NULL},
    {"attributes", 9, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"droppedAttributesCount", 10, K_UINT32, 0, NULL, NULL},
    {"events", 11, K_REPEATED, COUNT_CONTAINER, &EVENT, NULL},
    {"droppedEventsCount", 12, K_UINT32, 0, NULL, NULL},
    {"links", 13, K_REPEATED, COUNT_CONTAINER, &LINK, NULL},
    {"droppedLinksCount", 14, K_UINT32, 0, NULL, NULL},
    {"status", 15, K_MESSAGE, 0, &STATUS, NULL},
    END,
};
static const Message SPAN = {"opentelemetry.proto.trace.v1.Span", SPAN_FIELDS};

static const Field SCOPE_SPANS_FIELDS[] = {
    {"scope", 1, K_MESSAGE, 0, &SCOPE, NULL},
    {"spans", 2, K_REPEATED, COUNT_ITEM, &SPAN, NULL},
    {"schemaUrl", 3, K_STRING, 0, NULL, NULL},
    END,
};
static const Message SCOPE_SPANS = {"opentelemetry.proto.trace.v1.ScopeSpans", SCOPE_SPANS_FIELDS};

static const Field RESOURCE_SPANS_FIELDS[] = {
    {"resource", 1, K_MESSAGE, 0, &RESOURCE, NULL},
    {"scopeSpans", 2, K_REPEATED, COUNT_CONTAINER, &SCOPE_SPANS, NULL},
    {"schemaUrl", 3, K_STRING, 0, NULL, NULL},
    END,
};
static const Message RESOURCE_SPANS = {"opentelemetry.proto.trace.v1.ResourceSpans", RESOURCE_SPANS_FIELDS};

/* -- logs -- */

static const Field LOG_RECORD_FIELDS[] = {
    {"timeUnixNano", 1, K_FIXED64, 0, NULL, NULL},
    {"observedTimeUnixNano", 11, K_FIXED64, 0, NULL, NULL},
    {"severityNumber", 2, K_ENUM, 0, NULL, SEVERITY_NUMBERS},
    {"severityText", 3, K_STRING, 0, NULL, NULL},
    {"body", 5, K_MESSAGE, 0, &ANY_VALUE, NULL},
    {"attributes", 6, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"droppedAttributesCount", 7, K_UINT32, 0, NULL, NULL},
    {"flags", 8, K_FIXED32, 0, NULL, NULL},
    {"traceId", 9, K_HEX_LENIENT, 0, NULL, NULL},
    {"spanId", 10, K_HEX_LENIENT, 0, NULL, NULL},
    {"eventName", 12, K_STRING, 0, NULL, NULL},
    END,
};
static const Message LOG_RECORD = {"opentelemetry.proto.logs.v1.LogRecord", LOG_RECORD_FIELDS};

static const Field SCOPE_LOGS_FIELDS[] = {
    {"scope", 1, K_MESSAGE, 0, &SCOPE, NULL},
    {"logRecords", 2, K_REPEATED, COUNT_ITEM, &LOG_RECORD, NULL},
    {"schemaUrl", 3, K_STRING, 0, NULL, NULL},
    END,
};
static const Message SCOPE_LOGS = {"opentelemetry.proto.logs.v1.ScopeLogs", SCOPE_LOGS_FIELDS};

static const Field RESOURCE_LOGS_FIELDS[] = {
    {"resource", 1, K_MESSAGE, 0, &RESOURCE, NULL},
    {"scopeLogs", 2, K_REPEATED, COUNT_CONTAINER, &SCOPE_LOGS, NULL},
    {"schemaUrl", 3, K_STRING, 0, NULL, NULL},
    END,
};
static const Message RESOURCE_LOGS = {"opentelemetry.proto.logs.v1.ResourceLogs", RESOURCE_LOGS_FIELDS};

/* -- metrics -- */

#define VALUE (PRESENCE | ONEOF | NULL_BAIL)
static const Field EXEMPLAR_FIELDS[] = {
    {"filteredAttributes", 7, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"timeUnixNano", 2, K_FIXED64, 0, NULL, NULL},
    {"asDouble", 3, K_DOUBLE, VALUE, NULL, NULL},
    {"asInt", 6, K_SFIXED64, VALUE, NULL, NULL},
    {"spanId", 4, K_HEX_LENIENT, 0, NULL, NULL},
    {"traceId", 5, K_HEX_LENIENT, 0, NULL, NULL},
    END,
};
static const Message EXEMPLAR = {"opentelemetry.proto.metrics.v1.Exemplar", EXEMPLAR_FIELDS};

static const Field NUMBER_POINT_FIELDS[] = {
    {"attributes", 7, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"startTimeUnixNano", 2, K_FIXED64, 0, NULL, NULL},
    {"timeUnixNano", 3, K_FIXED64, 0, NULL, NULL},
    {"asDouble", 4, K_DOUBLE, VALUE, NULL, NULL},
    {"asInt", 6, K_SFIXED64, VALUE, NULL, NULL},
    {"exemplars", 5, K_REPEATED, COUNT_CONTAINER, &EXEMPLAR, NULL},
    {"flags", 8, K_UINT32, 0, NULL, NULL},
    END,
};
static const Message NUMBER_POINT = {"opentelemetry.proto.metrics.v1.NumberDataPoint", NUMBER_POINT_FIELDS};

static const Field HISTOGRAM_POINT_FIELDS[] = {
    {"attributes", 9, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"startTimeUnixNano", 2, K_FIXED64, 0, NULL, NULL},
    {"timeUnixNano", 3, K_FIXED64, 0, NULL, NULL},
    {"count", 4, K_FIXED64, 0, NULL, NULL},
    {"sum", 5, K_DOUBLE, PRESENCE, NULL, NULL},
    {"bucketCounts", 6, K_PACKED_FIXED64, 0, NULL, NULL},
    {"explicitBounds", 7, K_PACKED_DOUBLE, 0, NULL, NULL},
    {"exemplars", 8, K_REPEATED, COUNT_CONTAINER, &EXEMPLAR, NULL},
    {"flags", 10, K_UINT32, 0, NULL, NULL},
    {"min", 11, K_DOUBLE, PRESENCE, NULL, NULL},
    {"max", 12, K_DOUBLE, PRESENCE, NULL, NULL},
    END,
};
static const Message HISTOGRAM_POINT = {"opentelemetry.proto.metrics.v1.HistogramDataPoint", HISTOGRAM_POINT_FIELDS};

static const Field BUCKETS_FIELDS[] = {
    {"offset", 1, K_SINT32, 0, NULL, NULL},
    {"bucketCounts", 2, K_PACKED_UINT64, 0, NULL, NULL},
    END,
};
static const Message BUCKETS = {"opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint.Buckets", BUCKETS_FIELDS};

static const Field EXPONENTIAL_POINT_FIELDS[] = {
    {"attributes", 1, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"startTimeUnixNano", 2, K_FIXED64, 0, NULL, NULL},
    {"timeUnixNano", 3, K_FIXED64, 0, NULL, NULL},
    {"count", 4, K_FIXED64, 0, NULL, NULL},
    {"sum", 5, K_DOUBLE, PRESENCE, NULL, NULL},
    {"scale", 6, K_SINT32, 0, NULL, NULL},
    {"zeroCount", 7, K_FIXED64, 0, NULL, NULL},
    {"positive", 8, K_MESSAGE, 0, &BUCKETS, NULL},
    {"negative", 9, K_MESSAGE, 0, &BUCKETS, NULL},
    {"flags", 10, K_UINT32, 0, NULL, NULL},
    {"exemplars", 11, K_REPEATED, COUNT_CONTAINER, &EXEMPLAR, NULL},
    {"min", 12, K_DOUBLE, PRESENCE, NULL, NULL},
    {"max", 13, K_DOUBLE, PRESENCE, NULL, NULL},
    {"zeroThreshold", 14, K_DOUBLE, 0, NULL, NULL},
    END,
};
static const Message EXPONENTIAL_POINT = {"opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint",
                                          EXPONENTIAL_POINT_FIELDS};

static const Field QUANTILE_FIELDS[] = {{"quantile", 1, K_DOUBLE, 0, NULL, NULL}, {"value", 2, K_DOUBLE, 0, NULL, NULL}, END};
static const Message QUANTILE = {"opentelemetry.proto.metrics.v1.SummaryDataPoint.ValueAtQuantile", QUANTILE_FIELDS};

static const Field SUMMARY_POINT_FIELDS[] = {
    {"attributes", 7, K_REPEATED, 0, &KEY_VALUE, NULL},
    {"startTimeUnixNano", 2, K_FIXED64, 0, NULL, NULL},
    {"timeUnixNano", 3, K_FIXED64, 0, NULL, NULL},
    {"count", 4, K_FIXED64, 0, NULL, NULL},
    {"sum", 5, K_DOUBLE, 0, NULL, NULL},
    {"quantileValues", 6, K_REPEATED, 0, &QUANTILE, NULL},
    {"flags", 8, K_UINT32, 0, NULL, NULL},
    END,
};
static const Message SUMMARY_POINT = {"opentelemetry.proto.metrics.v1.SummaryDataPoint", SUMMARY_POINT_FIELDS};

static const Field GAUGE_FIELDS[] = {{"dataPoints", 1, K_REPEATED, COUNT_ITEM, &NUMBER_POINT, NULL}, END};
static const Message GAUGE = {"opentelemetry.proto.metrics.v1.Gauge", GAUGE_FIELDS};
static const Field SUM_FIELDS[] = {
    {"dataPoints", 1, K_REPEATED, COUNT_ITEM, &NUMBER_POINT, NULL},
    {"aggregationTemporality", 2, K_ENUM, 0, NULL, TEMPORALITIES},
    {"isMonotonic", 3, K_BOOL, 0, NULL, NULL},
    END,
};
static const Message SUM = {"opentelemetry.proto.metrics.v1.Sum", SUM_FIELDS};
static const Field HISTOGRAM_FIELDS[] = {
    {"dataPoints", 1, K_REPEATED, COUNT_ITEM, &HISTOGRAM_POINT, NULL},
    {"aggregationTemporality", 2, K_ENUM, 0, NULL, TEMPORALITIES},
    END,
};
static const Message HISTOGRAM = {"opentelemetry.proto.metrics.v1.Histogram", HISTOGRAM_FIELDS};
static const Field EXPONENTIAL_FIELDS[] = {
    {"dataPoints", 1, K_REPEATED, COUNT_ITEM, &EXPONENTIAL_POINT, NULL},
    {"aggregationTemporality", 2, K_ENUM, 0, NULL, TEMPORALITIES},
    END,
};
static const Message EXPONENTIAL = {"opentelemetry.proto.metrics.v1.ExponentialHistogram", EXPONENTIAL_FIELDS};
static const Field SUMMARY_FIELDS[] = {{"dataPoints", 1, K_REPEATED, COUNT_ITEM, &SUMMARY_POINT, NULL}, END};
static const Message SUMMARY = {"opentelemetry.proto.metrics.v1.Summary", SUMMARY_FIELDS};

/* The reference reads a metric's data objects apart (receiver/frontends/decode.py: a null one is
 * absent, two refuse the metric): as a oneof whose null members are unset. */
#define DATA (PRESENCE | ONEOF)
static const Field METRIC_FIELDS[] = {
    {"name", 1, K_STRING, 0, NULL, NULL},
    {"description", 2, K_STRING, 0, NULL, NULL},
    {"unit", 3, K_STRING, 0, NULL, NULL},
    {"gauge", 5, K_MESSAGE, DATA, &GAUGE, NULL},
    {"sum", 7, K_MESSAGE, DATA, &SUM, NULL},
    {"histogram", 9, K_MESSAGE, DATA, &HISTOGRAM, NULL},
    {"exponentialHistogram", 10, K_MESSAGE, DATA, &EXPONENTIAL, NULL},
    {"summary", 11, K_MESSAGE, DATA, &SUMMARY, NULL},
    {"metadata", 12, K_REPEATED, 0, &KEY_VALUE, NULL},
    END,
};
static const Message METRIC = {"opentelemetry.proto.metrics.v1.Metric", METRIC_FIELDS};

static const Field SCOPE_METRICS_FIELDS[] = {
    {"scope", 1, K_MESSAGE, 0, &SCOPE, NULL},
    {"metrics", 2, K_REPEATED, COUNT_CONTAINER, &METRIC, NULL},
    {"schemaUrl", 3, K_STRING, 0, NULL, NULL},
    END,
};
static const Message SCOPE_METRICS = {"opentelemetry.proto.metrics.v1.ScopeMetrics", SCOPE_METRICS_FIELDS};

static const Field RESOURCE_METRICS_FIELDS[] = {
    {"resource", 1, K_MESSAGE, 0, &RESOURCE, NULL},
    {"scopeMetrics", 2, K_REPEATED, COUNT_CONTAINER, &SCOPE_METRICS, NULL},
    {"schemaUrl", 3, K_STRING, 0, NULL, NULL},
    END,
};
static const Message RESOURCE_METRICS = {"opentelemetry.proto.metrics.v1.ResourceMetrics", RESOURCE_METRICS_FIELDS};

/* The requests: the reference reads only this one key of the document (all others are ignored,
 * whatever they are), so it is not a Message. */
typedef struct {
    const char *key;
    const Message *resource;
} Request;

static const Request REQUESTS[] = {
    {"resourceSpans", &RESOURCE_SPANS},
    {"resourceLogs", &RESOURCE_LOGS},
    {"resourceMetrics", &RESOURCE_METRICS},
};

static const Message *const ALL_MESSAGES[] = {
    &ANY_VALUE, &ARRAY_VALUE, &KVLIST, &KEY_VALUE, &RESOURCE, &SCOPE, &STATUS, &EVENT, &LINK, &SPAN,
    &SCOPE_SPANS, &RESOURCE_SPANS, &LOG_RECORD, &SCOPE_LOGS, &RESOURCE_LOGS, &EXEMPLAR, &NUMBER_POINT,
    &HISTOGRAM_POINT, &BUCKETS, &EXPONENTIAL_POINT, &QUANTILE, &SUMMARY_POINT, &GAUGE, &SUM, &HISTOGRAM,
    &EXPONENTIAL, &SUMMARY, &METRIC, &SCOPE_METRICS, &RESOURCE_METRICS, NULL,
};

/* ---- 4. Values ------------------------------------------------------------------------------------ */

typedef struct {
    In in;
    Out out;
    uint64_t items, containers;
} Ctx;

/* A JSON string that is a decimal integer as Python's int() reads the strings we accept: ASCII digits,
 * an optional leading '-' (only where `signed_ok`), at most 20 digits. Anything else (spaces, '+', '_',
 * "1e3", non-ASCII digits, which int() or float() might accept) -> BAIL. */
static int
string_integer(In *in, int signed_ok, int *negative, uint64_t *mag)
{
    const uint8_t *p = in->p + 1; /* past the quote (peek saw it) */
    const uint8_t *end = in->end;
    *negative = 0;
    if (p < end && *p == '-') {
        if (!signed_ok)
            return BAIL;
        *negative = 1;
        p++;
    }
    const uint8_t *digits = p;
    uint64_t acc = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        if (acc > (UINT64_MAX - d) / 10)
            return BAIL;
        acc = acc * 10 + d;
        p++;
    }
    if (p == digits || p - digits > 20 || p >= end || *p != '"')
        return BAIL;
    in->p = p + 1;
    *mag = acc;
    return OK;
}

/* An integer field's value: a JSON integer or a decimal string; the value as (negative, magnitude). */
static int
read_integer(In *in, int signed_ok, int *negative, uint64_t *mag)
{
    int c = peek(in);
    if (c == '"')
        return string_integer(in, signed_ok, negative, mag);
    if (c != '-' && (c < '0' || c > '9'))
        return BAIL; /* true/false, objects, arrays: json_format refuses (or, for a bool, may not) */
    Number num;
    CHECK(read_number(in, &num));
    if (!num.integer || !num.fits)
        return BAIL; /* 1.0, 1e2 (json_format accepts integral floats): left to it */
    if (num.negative && !signed_ok && num.mag != 0)
        return BAIL;
    *negative = num.negative && num.mag != 0;
    *mag = num.mag;
    return OK;
}

static int
read_unsigned(In *in, uint64_t max, uint64_t *out)
{
    int negative;
    uint64_t mag;
    CHECK(read_integer(in, 0, &negative, &mag));
    if (negative || mag > max)
        return BAIL;
    *out = mag;
    return OK;
}

static int
read_signed(In *in, int64_t min, int64_t max, int64_t *out)
{
    int negative;
    uint64_t mag;
    CHECK(read_integer(in, 1, &negative, &mag));
    if (negative) {
        if (mag > (uint64_t)INT64_MAX + 1 || (mag > 0 && -(int64_t)(mag - 1) - 1 < min))
            return BAIL;
        *out = -(int64_t)(mag - 1) - 1;
    } else {
        if (mag > (uint64_t)max)
            return BAIL;
        *out = (int64_t)mag;
    }
    return OK;
}

/* A double field: a JSON number, or "NaN" / "Infinity" / "-Infinity" (json_format's spellings; other
 * strings, which Python's float() may read, -> BAIL). */
static int
read_double(In *in, double *out)
{
    int c = peek(in);
    if (c == '"') {
        const uint8_t *p = in->p;
        size_t left = (size_t)(in->end - p);
        if (left >= 5 && memcmp(p, "\"NaN\"", 5) == 0) {
            uint64_t bits = 0x7ff8000000000000ULL; /* Python's float('nan') */
            memcpy(out, &bits, sizeof bits);
            in->p += 5;
            return OK;
        }
        if (left >= 10 && memcmp(p, "\"Infinity\"", 10) == 0) {
            *out = HUGE_VAL;
            in->p += 10;
            return OK;
        }
        if (left >= 11 && memcmp(p, "\"-Infinity\"", 11) == 0) {
            *out = -HUGE_VAL;
            in->p += 11;
            return OK;
        }
        return BAIL;
    }
    if (c != '-' && (c < '0' || c > '9'))
        return BAIL;
    Number num;
    CHECK(read_number(in, &num));
    return number_as_double(&num, out);
}

static int
hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A trace or span id in hex. The reference (decode.py _hex_to_b64): null and "" are unset; a string
 * bytes.fromhex reads is the id; anything else refuses the item (strict) or is dropped (lenient).
 * bytes.fromhex also skips ASCII whitespace between pairs: a string with whitespace (or escapes or
 * non-ASCII bytes, rare in an id) -> BAIL. */
static int
hex_field(Ctx *x, const Field *f)
{
    In *in = &x->in;
    int c = peek(in);
    if (c == 'n')
        return literal(in, "null", 4);
    if (c != '"') {
        if (f->kind == K_HEX)
            return BAIL;
        return skip_value(in); /* lenient: not a string -> dropped */
    }
    const uint8_t *p = in->p + 1, *end = in->end;
    const uint8_t *start = p;
    int bad = 0;
    while (p < end && *p != '"') {
        uint8_t ch = *p;
        if (ch == '\\' || ch >= 0x80 || ch <= 0x20 || ch == 0x7f || ch == '\v' || ch == '\f')
            return BAIL;
        if (hexval(ch) < 0)
            bad = 1;
        p++;
    }
    if (p >= end)
        return BAIL;
    size_t n = (size_t)(p - start);
    in->p = p + 1;
    if (n == 0)
        return OK;
    if (bad || n % 2) {
        if (f->kind == K_HEX)
            return BAIL;
        return OK; /* lenient: dropped */
    }
    NEED(&x->out, 16 + n / 2);
    raw_varint(&x->out, ((uint64_t)f->number << 3) | 2);
    raw_varint(&x->out, n / 2);
    for (size_t i = 0; i < n; i += 2)
        x->out.data[x->out.len++] = (uint8_t)(hexval(start[i]) << 4 | hexval(start[i + 1]));
    return OK;
}

/* An enum value by name: one of the enum's names, exactly (json_format ignores an unknown name under
 * ignore_unknown_fields and reads a decimal string as a number: both -> BAIL). */
static int
enum_name(In *in, const EnumValue *values, int64_t *out)
{
    const uint8_t *p = in->p + 1, *end = in->end;
    const uint8_t *start = p;
    while (p < end && ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
        p++;
    if (p >= end || *p != '"' || values == NULL)
        return BAIL;
    size_t n = (size_t)(p - start);
    for (; values->name != NULL; values++) {
        if (strlen(values->name) == n && memcmp(values->name, start, n) == 0) {
            *out = values->number;
            in->p = p + 1;
            return OK;
        }
    }
    return BAIL;
}

static int
string_field(Ctx *x, const Field *f)
{
    In *in = &x->in;
    skip_ws(in);
    if (in->p >= in->end || *in->p != '"')
        return BAIL;
    /* room for the unescaped text: at most its raw length (up to the first quote not escaped) */
    const uint8_t *q = in->p + 1;
    const uint8_t *close = memchr(q, '"', (size_t)(in->end - q));
    if (close == NULL)
        return BAIL;
    if (memchr(q, '\\', (size_t)(close - q)) != NULL) {
        close = q;
        while (close < in->end && *close != '"')
            close += *close == '\\' ? 2 : 1;
    }
    size_t raw = close > in->end ? (size_t)(in->end - q) : (size_t)(close - q);
    size_t start;
    CHECK(open_field(&x->out, f->number, &start));
    NEED(&x->out, raw + 4);
    size_t n;
    CHECK(read_string(in, x->out.data + start, &n));
    x->out.len = start + n;
    if (n == 0 && !(f->flags & PRESENCE)) {
        x->out.len = start - 1 - (size_t)varint_size(((uint64_t)f->number << 3) | 2);
        return OK;
    }
    return close_field(&x->out, start);
}

static int
base64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* A bytes field in base64. json_format pads the text and reads it with base64.urlsafe_b64decode, which
 * skips what is not base64 and tolerates odd padding; only the plain forms are read here: base64 or
 * base64url characters, then the padding their count calls for or none. Anything else -> BAIL. */
static int
bytes_field(Ctx *x, const Field *f)
{
    In *in = &x->in;
    if (peek(in) != '"')
        return BAIL;
    const uint8_t *p = in->p + 1, *end = in->end;
    const uint8_t *start = p;
    while (p < end && base64_value(*p) >= 0)
        p++;
    size_t data = (size_t)(p - start);
    size_t pads = 0;
    while (p < end && *p == '=')
        p++, pads++;
    if (p >= end || *p != '"' || data % 4 == 1 || (pads && (data + pads) % 4 != 0))
        return BAIL;
    in->p = p + 1;
    size_t begin;
    CHECK(open_field(&x->out, f->number, &begin));
    NEED(&x->out, data);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < data; i++) {
        acc = (acc << 6) | (uint32_t)base64_value(start[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            x->out.data[x->out.len++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return close_field(&x->out, begin);
}

static int message(Ctx *x, const Message *m);

static int
packed_field(Ctx *x, const Field *f)
{
    In *in = &x->in;
    CHECK(expect(in, '['));
    size_t start;
    CHECK(open_field(&x->out, f->number, &start));
    if (peek(in) != ']') {
        for (;;) {
            if (f->kind == K_PACKED_DOUBLE) {
                double d;
                CHECK(read_double(in, &d));
                uint64_t bits;
                memcpy(&bits, &d, sizeof bits);
                NEED(&x->out, 8);
                for (int i = 0; i < 8; i++)
                    x->out.data[x->out.len++] = (uint8_t)(bits >> (8 * i));
            } else {
                uint64_t v;
                CHECK(read_unsigned(in, UINT64_MAX, &v));
                NEED(&x->out, 10);
                if (f->kind == K_PACKED_FIXED64) {
                    for (int i = 0; i < 8; i++)
                        x->out.data[x->out.len++] = (uint8_t)(v >> (8 * i));
                } else
                    raw_varint(&x->out, v);
            }
            int c = peek(in);
            if (c == ',') {
                in->p++;
                continue;
            }
            if (c != ']')
                return BAIL;
            break;
        }
    }
    in->p++;
    if (x->out.len == start) { /* [] : nothing, as SerializeToString writes nothing */
        x->out.len = start - 1 - (size_t)varint_size(((uint64_t)f->number << 3) | 2);
        return OK;
    }
    return close_field(&x->out, start);
}

static int
repeated_field(Ctx *x, const Field *f)
{
    In *in = &x->in;
    CHECK(expect(in, '['));
    if (++in->depth > MAX_DEPTH)
        return BAIL;
    if (peek(in) != ']') {
        for (;;) {
            if (peek(in) != '{')
                return BAIL; /* null elements and non-objects: json_format refuses them */
            size_t start;
            CHECK(open_field(&x->out, f->number, &start));
            CHECK(message(x, f->sub));
            CHECK(close_field(&x->out, start));
            if (f->flags & COUNT_ITEM)
                x->items++;
            if (f->flags & COUNT_CONTAINER)
                x->containers++;
            int c = peek(in);
            if (c == ',') {
                in->p++;
                continue;
            }
            if (c != ']')
                return BAIL;
            break;
        }
    }
    in->p++;
    in->depth--;
    return OK;
}

static int
field_value(Ctx *x, const Field *f)
{
    In *in = &x->in;
    Out *out = &x->out;
    int c = peek(in);
    if (c == 'n' && f->kind != K_BAIL) {
        if (f->flags & NULL_BAIL)
            return BAIL;
        return literal(in, "null", 4); /* json_format clears the field: unset */
    }
    int presence = f->flags & PRESENCE;
    uint64_t u;
    int64_t s;
    double d;
    switch (f->kind) {
    case K_STRING:
        return string_field(x, f);
    case K_HEX:
    case K_HEX_LENIENT:
        return hex_field(x, f);
    case K_BYTES:
        return bytes_field(x, f);
    case K_UINT32:
        CHECK(read_unsigned(in, UINT32_MAX, &u));
        return (u || presence) ? put_varint_field(out, f->number, u) : OK;
    case K_FIXED32:
        CHECK(read_unsigned(in, UINT32_MAX, &u));
        return (u || presence) ? put_fixed_field(out, f->number, u, 4) : OK;
    case K_FIXED64:
        CHECK(read_unsigned(in, UINT64_MAX, &u));
        return (u || presence) ? put_fixed_field(out, f->number, u, 8) : OK;
    case K_INT64:
        CHECK(read_signed(in, INT64_MIN, INT64_MAX, &s));
        return (s || presence) ? put_varint_field(out, f->number, (uint64_t)s) : OK;
    case K_SFIXED64:
        CHECK(read_signed(in, INT64_MIN, INT64_MAX, &s));
        return (s || presence) ? put_fixed_field(out, f->number, (uint64_t)s, 8) : OK;
    case K_SINT32:
        CHECK(read_signed(in, INT32_MIN, INT32_MAX, &s));
        return (s || presence) ? put_varint_field(out, f->number, ((uint64_t)s << 1) ^ (uint64_t)(s >> 63)) : OK;
    case K_ENUM:
        if (c == '"')
            CHECK(enum_name(in, f->values, &s)); /* a name json_format knows */
        else
            CHECK(read_signed(in, INT32_MIN, INT32_MAX, &s));
        return (s || presence) ? put_varint_field(out, f->number, (uint64_t)s) : OK;
    case K_INT32:
        CHECK(read_signed(in, INT32_MIN, INT32_MAX, &s));
        return (s || presence) ? put_varint_field(out, f->number, (uint64_t)s) : OK;
    case K_DOUBLE: {
        CHECK(read_double(in, &d));
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return (bits || presence) ? put_fixed_field(out, f->number, bits, 8) : OK;
    }
    case K_BOOL:
        if (c == 't') {
            CHECK(literal(in, "true", 4));
            return put_varint_field(out, f->number, 1);
        }
        if (c == 'f') {
            CHECK(literal(in, "false", 5));
            return presence ? put_varint_field(out, f->number, 0) : OK;
        }
        return BAIL;
    case K_MESSAGE: {
        if (c != '{')
            return BAIL;
        size_t start;
        CHECK(open_field(out, f->number, &start));
        CHECK(message(x, f->sub));
        return close_field(out, start);
    }
    case K_REPEATED:
        return repeated_field(x, f);
    case K_PACKED_DOUBLE:
    case K_PACKED_FIXED64:
    case K_PACKED_UINT64:
        return packed_field(x, f);
    default:
        return BAIL;
    }
}

/* An object key the schema does not know: json_format ignores it unless it could read it as a field
 * (its proto name, which has '_' wherever it differs from the JSON name; an extension "[...]"). */
static int
unknown_key(const uint8_t *key, size_t n)
{
    if (memchr(key, '_', n) || (n && key[0] == '['))
        return BAIL;
    return OK;
}

/* A key as written, when it has no escape (every key the schema knows): else NULL (a key with escapes
 * could only be a known one written oddly, or an unknown one: validate it, and treat it as unknown
 * unless its raw text has '_' or '[' or '\\u' that could spell them -> BAIL). */
static int
read_key(In *in, const uint8_t **key, size_t *n)
{
    skip_ws(in);
    if (in->p >= in->end || *in->p != '"')
        return BAIL;
    const uint8_t *p = in->p + 1, *end = in->end;
    const uint8_t *start = p;
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80)
        p++;
    if (p < end && *p == '"') {
        *key = start;
        *n = (size_t)(p - start);
        in->p = p + 1;
        return OK;
    }
    /* escapes or non-ASCII: validate; such a key never names a field here -> BAIL if escaped */
    const uint8_t *before = in->p;
    size_t len;
    CHECK(read_string(in, NULL, &len));
    if (memchr(before, '\\', (size_t)(in->p - before)))
        return BAIL;
    *key = start;
    *n = (size_t)(in->p - 1 - start);
    return OK;
}

static int
message(Ctx *x, const Message *m)
{
    In *in = &x->in;
    CHECK(expect(in, '{'));
    if (++in->depth > MAX_DEPTH)
        return BAIL;
    uint64_t seen = 0;
    int oneofs = 0, hint = 0, count = 0;
    while (m->fields[count].name != NULL)
        count++;
    if (peek(in) == '}') {
        in->p++;
        in->depth--;
        return OK;
    }
    for (;;) {
        const uint8_t *key;
        size_t n;
        CHECK(read_key(in, &key, &n));
        CHECK(expect(in, ':'));
        /* Keys mostly come in the schema's order: look from the one after the last match, wrapping. */
        const Field *f = NULL;
        int index = hint;
        for (int tried = 0; tried < count; tried++, index = index + 1 == count ? 0 : index + 1) {
            const Field *candidate = &m->fields[index];
            if (n && candidate->name[0] == key[0] && strncmp(candidate->name, (const char *)key, n) == 0 &&
                candidate->name[n] == 0) {
                f = candidate;
                hint = index + 1 == count ? 0 : index + 1;
                break;
            }
        }
        if (f == NULL) {
            CHECK(unknown_key(key, n));
            CHECK(skip_value(in));
        } else {
            if (f->kind == K_BAIL || (seen >> index) & 1)
                return BAIL; /* a duplicate key: orjson keeps the last, json_format never sees the first */
            seen |= (uint64_t)1 << index;
            if ((f->flags & ONEOF) && peek(in) != 'n' && ++oneofs > 1)
                return BAIL;
            CHECK(field_value(x, f));
        }
        int c = peek(in);
        if (c == ',') {
            in->p++;
            continue;
        }
        if (c != '}')
            return BAIL;
        in->p++;
        in->depth--;
        return OK;
    }
}

/* The document: an object whose one key `request->key` holds the resource entries; every other key is
 * ignored by the reference (whatever its value), so only validated. */
static int
document(Ctx *x, const Request *request)
{
    In *in = &x->in;
    int found = 0;
    if (in->p == in->end)
        return OK; /* an empty body: the reference reads {} (a blank one is not JSON) */
    CHECK(expect(in, '{'));
    in->depth = 1;
    Field list = {request->key, 1, K_REPEATED, COUNT_CONTAINER, request->resource, NULL};
    if (peek(in) != '}') {
        for (;;) {
            const uint8_t *key;
            size_t n;
            CHECK(read_key(in, &key, &n));
            CHECK(expect(in, ':'));
            if (strncmp(request->key, (const char *)key, n) == 0 && request->key[n] == 0) {
                if (found++)
                    return BAIL;
                if (peek(in) == 'n')
                    CHECK(literal(in, "null", 4));
                else
                    CHECK(repeated_field(x, &list));
            } else
                CHECK(skip_value(in));
            int c = peek(in);
            if (c == ',') {
                in->p++;
                continue;
            }
            if (c != '}')
                return BAIL;
            break;
        }
    }
    in->p++;
    skip_ws(in);
    return in->p == in->end ? OK : BAIL;
}

/* ---- 5. The module -------------------------------------------------------------------------------- */

static PyObject *
py_transcode(PyObject *self, PyObject *args)
{
    (void)self;
    int signal;
    Py_buffer body;
    if (!PyArg_ParseTuple(args, "iy*:transcode", &signal, &body))
        return NULL;
    if (signal < 0 || signal > 2) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_ValueError, "signal must be 0 (traces), 1 (logs) or 2 (metrics)");
        return NULL;
    }
    /* strtod reads the decimal point of LC_NUMERIC: the C locale's is the only one JSON has */
    const struct lconv *lc = localeconv();
    if (lc == NULL || strcmp(lc->decimal_point, ".") != 0) {
        PyBuffer_Release(&body);
        Py_RETURN_NONE;
    }
    Ctx x;
    memset(&x, 0, sizeof x);
    x.in.p = body.buf;
    x.in.end = (const uint8_t *)body.buf + body.len;
    x.out.limit = (size_t)body.len * OUT_FACTOR + OUT_SLACK;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    x.out.cap = (size_t)body.len + 64;
    x.out.data = PyMem_RawMalloc(x.out.cap);
    if (x.out.data == NULL) {
        x.out.nomem = 1;
        rc = BAIL;
    } else
        rc = document(&x, &REQUESTS[signal]);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&body);
    PyObject *result;
    if (x.out.nomem) {
        result = PyErr_NoMemory();
    } else if (rc != OK) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(y#KK)", (const char *)x.out.data, (Py_ssize_t)x.out.len,
                               (unsigned long long)x.items, (unsigned long long)x.containers);
    }
    PyMem_RawFree(x.out.data);
    return result;
}

/* The schema as (message, json name, number, kind) tuples, for the test that holds it to the installed
 * protobuf descriptors. */
static PyObject *
py_schema(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    static const char *const KINDS[] = {
        "string", "hex", "hex_lenient", "uint32", "fixed32", "fixed64", "int64", "sfixed64", "sint32",
        "enum", "int32", "double", "bool", "message", "repeated", "packed_double", "packed_fixed64", "packed_uint64",
        "bytes", "bail",
    };
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (const Message *const *m = ALL_MESSAGES; *m != NULL; m++) {
        for (const Field *f = (*m)->fields; f->name != NULL; f++) {
            PyObject *names = PyDict_New();
            for (const EnumValue *v = f->values; names != NULL && v != NULL && v->name != NULL; v++) {
                PyObject *number = PyLong_FromLong(v->number);
                if (number == NULL || PyDict_SetItemString(names, v->name, number) < 0)
                    Py_CLEAR(names);
                Py_XDECREF(number);
            }
            if (names == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyObject *row = Py_BuildValue("(ssIsisN)", (*m)->name, f->name, f->number, KINDS[f->kind], f->flags,
                                          f->sub ? f->sub->name : "", names);
            if (row == NULL || PyList_Append(out, row) < 0) {
                Py_XDECREF(row);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(row);
        }
    }
    return out;
}

static PyMethodDef jsonwire_methods[] = {
    {"transcode", py_transcode, METH_VARARGS,
     "transcode(signal, body) -> (protobuf, items, containers) or None (take the reference path).\n"
     "signal: 0 traces, 1 logs, 2 metrics. Runs without the GIL."},
    {"schema", py_schema, METH_NOARGS, "The schema the transcoder reads, for tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef jsonwire_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_jsonwire",
    .m_doc = "OTLP/JSON request bytes -> OTLP protobuf request bytes (traces, logs, metrics).",
    .m_size = 0,
    .m_methods = jsonwire_methods,
};

PyMODINIT_FUNC
PyInit__jsonwire(void)
{
    return PyModuleDef_Init(&jsonwire_module);
}
