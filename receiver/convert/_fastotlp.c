/*
 * _fastotlp: OTLP ExportTraceServiceRequest bytes -> the pieces of `llm_traces` rows, in C (and, in
 * _fastotlp_signals.c, ExportLogsServiceRequest / ExportMetricsServiceRequest bytes -> `llm_logs` /
 * `llm_metrics` rows).
 *
 * Why this exists: converting a span through the protobuf (upb) object model costs hundreds of
 * instructions per field access (descriptor look-ups, wrapper objects, UTF-8 decoding), ~40 us per
 * GenAI span. This module reads the protobuf wire format straight from the request bytes and writes
 * the JSON columns directly, so Python only assembles rows and runs the LLM/cost rules on the few
 * attributes they read.
 *
 * The pure-Python converter (receiver/convert/traces.py, attributes.py) is the reference: every rule
 * here reproduces it exactly, and tests/test_native_convert.py compares the two row by row.
 * Acceptance of the wire format reproduces upb (the protobuf runtime the pure path parses with):
 * a request upb refuses is refused here too (the decoder's error type, WireFormatError -> HTTP 400 /
 * INVALID_ARGUMENT), including invalid UTF-8 in any string field and nesting deeper than upb's limit
 * of 100 messages (the whole request, as upb refuses it; never a crash or a deep C stack).
 *
 * Layout of this file:
 *   1. Output buffers and segment lists
 *   2. Wire-format reader (varints, tags, fields, skipped groups)
 *   3. Text: UTF-8 validation, the cleaning rules of attributes.clean_text, JSON strings, numbers
 *   4. Value encoders: AnyValue, ArrayValue, KeyValueList and attribute maps -> JSON
 *   5. Span builder: Span -> row pieces; ScopeSpans, ResourceSpans, the request
 *   6. The TraceDecoder type; then the logs and metrics decoders (SignalDecoder, _fastotlp_signals.c,
 *      included here so that they share sections 1-5)
 *   7. The scanners (WireScanner, scan_json): what a request holds, counted before it is decoded,
 *      without the GIL
 *   8. Uuid, an id type the garbage collector does not track; and the module
 *
 * Safety: the input is untrusted. Every length is checked against the end of the enclosing message
 * before it is used, recursion is bounded by MAX_DEPTH, and every allocation is released on every path
 * (the decode context owns all scratch memory and frees it once at the end). What a request may cost
 * is bounded twice: before decoding by what the scanner counts (receiver/convert/budget.py), and while
 * decoding by `max_output`, the memory the text made of its strings may take.
 *
 * Threads: requests are decoded in a thread pool, off the event loop. The scanners run without the
 * GIL; the decoder makes Python objects as it goes, so it holds the GIL but offers it to other threads
 * every YIELD_TICKS units of work (a few ms), so the event loop is never held for long.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* upb's default nesting limit (kUpb_WireFormat_DefaultDepthLimit): the request is depth 0, each
 * nested message or group one more. Deeper input is refused as upb refuses it. */
#define MAX_DEPTH 100

/* Attribute keys longer than this are never among the keys Python asks for. */
#define MAX_WANTED_KEY_LEN 128

/* ======================================================================================== */
/* 1. Output buffers and segment lists                                                     */
/* ======================================================================================== */

/* A growable byte buffer. JSON documents and cleaned text are built in these. */
typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    int non_ascii; /* something non-ASCII was written since the last reset (see json_begin) */
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX / 2 - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = b->len + extra;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < need) {
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Room for `extra` more bytes. Inline: almost every call finds the room already there. */
static inline int
buf_reserve(Buf *b, Py_ssize_t extra)
{
    return b->cap - b->len >= extra ? 0 : buf_grow(b, extra);
}

static int
buf_put(Buf *b, const void *src, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static int
buf_putc(Buf *b, char c)
{
    if (buf_reserve(b, 1) < 0) {
        return -1;
    }
    b->data[b->len++] = c;
    return 0;
}

static int
buf_puts(Buf *b, const char *s)
{
    return buf_put(b, s, (Py_ssize_t)strlen(s));
}

/* One length-delimited occurrence of a field: a slice of the request bytes. */
typedef struct {
    const uint8_t *ptr;
    Py_ssize_t len;
} Seg;

/*
 * The occurrences of one message field, in wire order. Protobuf merges a singular message field that
 * occurs several times (parsing the concatenation of the occurrences), so a message is handled as the
 * list of its segments. Nearly every field occurs once, hence the inline first slot.
 */
typedef struct {
    Py_ssize_t n;
    Seg first;
    Seg *more; /* occurrences 2..n, or NULL */
    Py_ssize_t more_cap;
} Segs;

static Seg
segs_get(const Segs *s, Py_ssize_t i)
{
    return i == 0 ? s->first : s->more[i - 1];
}

static int
segs_push(Segs *s, const uint8_t *ptr, Py_ssize_t len)
{
    Seg seg = {ptr, len};
    if (s->n == 0) {
        s->first = seg;
        s->n = 1;
        return 0;
    }
    if (s->n - 1 == s->more_cap) {
        Py_ssize_t cap = s->more_cap ? s->more_cap * 2 : 4;
        Seg *more = PyMem_Realloc(s->more, (size_t)cap * sizeof(Seg));
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->more = more;
        s->more_cap = cap;
    }
    s->more[s->n - 1] = seg;
    s->n++;
    return 0;
}

static void
segs_free(Segs *s)
{
    PyMem_Free(s->more);
    s->more = NULL;
    s->more_cap = 0;
    s->n = 0;
}

static Segs
segs_of(const uint8_t *ptr, Py_ssize_t len)
{
    Segs s = {0};
    s.n = 1;
    s.first.ptr = ptr;
    s.first.len = len;
    return s;
}

/* ======================================================================================== */
/* Decoder configuration and per-call context                                              */
/* ======================================================================================== */

typedef struct {
    PyObject *str; /* the key as a Python str, reused as the dict key */
    const char *utf8;
    Py_ssize_t len;
} WantedKey;

typedef struct {
    PyObject_HEAD
    PyObject *budget_error; /* raised when the text produced would exceed decode()'s max_output */
    PyObject *keys;         /* tuple of str: the attribute keys Python reads */
    PyObject *uuid_type;    /* receiver.convert.pgvalues.Uuid */
    int uuid_native;        /* uuid_type is this module's Uuid: new_uuid builds it in place */
    PyObject *span_kinds;   /* traces.SPAN_KINDS; item 0 is the fallback for unknown values */
    PyObject *status_codes; /* traces.STATUS_CODES; item 0 is the fallback */
    PyObject *loads;        /* a JSON parser (orjson.loads) for array/kvlist values of wanted keys */
    PyObject *error_type;   /* raised for bytes upb would refuse */
    PyObject *nan_label;    /* "NaN", "Infinity", "-Infinity": attributes.finite_or_label */
    PyObject *inf_label;
    PyObject *ninf_label;
    WantedKey *wanted;      /* sorted by length */
    Py_ssize_t n_wanted;
    Py_ssize_t by_len_start[MAX_WANTED_KEY_LEN + 1];
    Py_ssize_t by_len_count[MAX_WANTED_KEY_LEN + 1];
    /* SignalDecoder only (logs and metrics, _fastotlp_signals.c); NULL in a TraceDecoder. */
    struct SignalConfig *signal;
    /* What a Resource's bytes decoded to (see resource_cached): bounded, touched only with the GIL. */
    PyObject *resource_cache;
} TraceDecoder;

/* A Uuid (the decoder's uuid_type) of the 16 bytes at `raw` (section 8). */
static PyObject *new_uuid(TraceDecoder *cfg, const uint8_t *raw);

static void signal_config_free(TraceDecoder *self);
static int signal_config_traverse(TraceDecoder *self, visitproc visit, void *arg);

/* What conversion had to alter: attributes.ConversionStats. */
typedef struct {
    Py_ssize_t truncated_values;
    Py_ssize_t nul_replaced;
    Py_ssize_t non_finite_numbers;
} Stats;

/* One KeyValue of an attribute map being encoded. */
typedef struct {
    const uint8_t *key; /* the key with NUL replaced: points into the request or at `owned` */
    Py_ssize_t key_len;
    char *owned;        /* the cleaned copy of a key that contained NUL, or NULL */
    int key_ascii;      /* the key is pure ASCII (a faster str) */
    int key_plain;      /* the key needs no JSON escape */
    Segs value;         /* the occurrences of KeyValue.value (merged, as protobuf does) */
} KvEntry;

typedef struct {
    TraceDecoder *cfg;
    const uint8_t *base; /* start of the request, for byte offsets in error messages */
    Py_ssize_t limit;    /* ConvertOptions.max_attribute_bytes */
    Stats stats;
    Buf json;            /* the JSON document being built */
    Buf text;            /* cleaned text on its way to a Python str */
    /* Entries of the attribute maps being encoded, used as a stack: a nested kvlist pushes its
     * entries above its parent's and pops them when done. Addressed by index (it may move). */
    KvEntry *kv;
    Py_ssize_t kv_len;
    Py_ssize_t kv_cap;
    Py_ssize_t span_index; /* index of the next span in the request, for rejection messages */
    Py_ssize_t rejected;
    Py_ssize_t max_errors;
    PyObject *rejections; /* list of (index, name, trace_id, problem), at most max_errors */
    /* A wire-format error, recorded where it is found and raised once the call unwinds: the reader
     * also runs without the GIL (the scanner), where no Python exception can be set. */
    const char *err_what;
    const uint8_t *err_at;
    /* Memory of the text made so far (str data, JSON parsed back, scratch buffers): the part of a
     * request's decoded size that depends on what its strings hold (escapes, non-ASCII), which the
     * scanner cannot see. Past max_output the decode stops with cfg->budget_error. */
    Py_ssize_t out_bytes;
    Py_ssize_t max_output;
    int over_budget;
    Py_ssize_t buffers_charged; /* capacity of the json and text buffers already charged */
    unsigned ticks; /* units of work since other threads last had a chance at the GIL */
    /* The accepted start times (receiver.convert.window), inclusive, and the callable that words a
     * refusal: window_problem(start_time_unix_nano) -> str. Spans outside are counted as too old or
     * too new. */
    uint64_t window_earliest;
    uint64_t window_latest;
    PyObject *window_problem;
    Py_ssize_t too_old;
    Py_ssize_t too_new;
} Ctx;

static int
wire_error(Ctx *ctx, const uint8_t *at, const char *what)
{
    ctx->err_what = what;
    ctx->err_at = at;
    return -1;
}

/* Units of work (values, attributes, spans, events, ...) between two offers of the GIL: a few ms. */
#define YIELD_TICKS 4096

/* Lets other threads (the event loop) run now and then during a long decode. Only this call's own
 * objects are in use and the request bytes are immutable, so releasing the GIL here is safe. */
static inline void
maybe_yield(Ctx *ctx)
{
    if (++ctx->ticks >= YIELD_TICKS) {
        ctx->ticks = 0;
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
    }
}

/* Charges `n` more bytes of output; -1 (with over_budget set) past max_output. */
static int
charge_output(Ctx *ctx, Py_ssize_t n)
{
    ctx->out_bytes += n;
    if (ctx->out_bytes > ctx->max_output) {
        ctx->over_budget = 1;
        return -1;
    }
    return 0;
}

/* Bytes of scratch memory per entry of the attribute stack: the entry, and what map_finish allocates to
 * group and sort the keys of a map (every map being finished has its entries on the stack). */
#define KV_SCRATCH_BYTES ((Py_ssize_t)sizeof(KvEntry) + 64)

/* The scratch buffers and the attribute stack, as they grow (they live as long as the call). */
static int
charge_buffers(Ctx *ctx)
{
    Py_ssize_t now = ctx->json.cap + ctx->text.cap + ctx->kv_cap * KV_SCRATCH_BYTES;
    if (now <= ctx->buffers_charged) {
        return 0;
    }
    Py_ssize_t grown = now - ctx->buffers_charged;
    ctx->buffers_charged = now;
    return charge_output(ctx, grown);
}

/* A str just made, charged by the size of its characters (as CPython stores them: 1, 2 or 4 bytes
 * each) plus its header; NULL (and the str released) when it does not fit the budget. */
static PyObject *
charged_str(Ctx *ctx, PyObject *str)
{
    if (str == NULL) {
        return NULL;
    }
    Py_ssize_t size = (Py_ssize_t)sizeof(PyCompactUnicodeObject) + PyUnicode_GET_LENGTH(str) * PyUnicode_KIND(str);
    if (charge_output(ctx, size) < 0 || charge_buffers(ctx) < 0) {
        Py_DECREF(str);
        return NULL;
    }
    return str;
}

static int
depth_error(Ctx *ctx, const uint8_t *at)
{
    return wire_error(ctx, at, "messages nested deeper than 100 levels");
}

/* ======================================================================================== */
/* 2. Wire-format reader                                                                    */
/* ======================================================================================== */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* The bytes of one message: fields are read from p until end. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

typedef struct {
    uint32_t number;
    int wire_type;
    uint64_t value;      /* varint, fixed32, fixed64 */
    const uint8_t *data; /* length-delimited */
    Py_ssize_t len;
} Field;

static Reader
reader_of(Seg seg)
{
    Reader r = {seg.ptr, seg.ptr + seg.len};
    return r;
}

/* A base-128 varint of at most 10 bytes, as upb reads it: bits past 64 are dropped, an 11th byte is
 * an error. It may not run past the end of the enclosing message. */
static int
read_varint(Ctx *ctx, Reader *r, uint64_t *out)
{
    const uint8_t *p = r->p;
    uint64_t value = 0;
    for (int i = 0; i < 10; i++) {
        if (p + i >= r->end) {
            return wire_error(ctx, p, "truncated varint");
        }
        uint8_t byte = p[i];
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            r->p = p + i + 1;
            *out = value;
            return 0;
        }
    }
    return wire_error(ctx, p, "varint longer than 10 bytes");
}

/* A field tag: upb refuses tags longer than 5 bytes or above 2^32 - 1. */
static int
read_tag(Ctx *ctx, Reader *r, uint32_t *tag)
{
    const uint8_t *start = r->p;
    uint64_t value;
    if (read_varint(ctx, r, &value) < 0) {
        return -1;
    }
    if (r->p - start > 5 || value > UINT32_MAX) {
        return wire_error(ctx, start, "invalid field tag");
    }
    *tag = (uint32_t)value;
    return 0;
}

static uint64_t
load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t
load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads the value of a field whose tag was just read (never a group). */
static int
read_value(Ctx *ctx, Reader *r, const uint8_t *at, Field *f)
{
    switch (f->wire_type) {
    case WT_VARINT:
        return read_varint(ctx, r, &f->value);
    case WT_I64:
        if (r->end - r->p < 8) {
            return wire_error(ctx, at, "truncated fixed64 field");
        }
        f->value = load_le64(r->p);
        r->p += 8;
        return 0;
    case WT_I32:
        if (r->end - r->p < 4) {
            return wire_error(ctx, at, "truncated fixed32 field");
        }
        f->value = load_le32(r->p);
        r->p += 4;
        return 0;
    case WT_LEN: {
        uint64_t len;
        const uint8_t *size_at = r->p;
        if (read_varint(ctx, r, &len) < 0) {
            return -1;
        }
        /* upb reads a size as a varint of at most 5 bytes (longer: "wire format was corrupt", also
         * when the value is small, e.g. 80 80 80 80 80 00), and refuses sizes of INT32_MAX or more
         * before comparing with what is left. */
        if (r->p - size_at > 5) {
            return wire_error(ctx, size_at, "length of a length-delimited field longer than 5 bytes");
        }
        if (len >= INT32_MAX || len > (uint64_t)(r->end - r->p)) {
            return wire_error(ctx, at, "length-delimited field runs past the end of its message");
        }
        f->data = r->p;
        f->len = (Py_ssize_t)len;
        r->p += len;
        return 0;
    }
    case WT_EGROUP:
        return wire_error(ctx, at, "end-group tag without its start-group");
    default:
        return wire_error(ctx, at, "invalid wire type");
    }
}

/* Skips a group (wire type 3). No field of the trace schema is a group, so every group is an unknown
 * field; upb still parses it: it must be well formed, closed by its own number, and counts as one
 * level of nesting. `depth` is the group's own depth. Unlike in a message, upb accepts field number 0
 * inside a skipped group (also as a nested group's number). */
static int
skip_group(Ctx *ctx, Reader *r, uint32_t number, int depth)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, r->p);
    }
    for (;;) {
        if (r->p >= r->end) {
            return wire_error(ctx, r->p, "group not closed");
        }
        const uint8_t *at = r->p;
        uint32_t tag;
        if (read_tag(ctx, r, &tag) < 0) {
            return -1;
        }
        Field f;
        f.number = tag >> 3;
        f.wire_type = (int)(tag & 7);
        if (f.wire_type == WT_EGROUP) {
            if (f.number == number) {
                return 0;
            }
            return wire_error(ctx, at, "end-group tag does not match its start-group");
        }
        if (f.wire_type == WT_SGROUP) {
            if (skip_group(ctx, r, f.number, depth + 1) < 0) {
                return -1;
            }
            continue;
        }
        if (read_value(ctx, r, at, &f) < 0) {
            return -1;
        }
    }
}

/* next_field for every case: multi-byte tags, long varints, groups, errors. */
static int
next_field_slow(Ctx *ctx, Reader *r, Field *f, int depth)
{
    for (;;) {
        if (r->p >= r->end) {
            return 0;
        }
        const uint8_t *at = r->p;
        uint32_t tag;
        if (read_tag(ctx, r, &tag) < 0) {
            return -1;
        }
        f->number = tag >> 3;
        f->wire_type = (int)(tag & 7);
        if (f->wire_type == WT_SGROUP) {
            if (f->number == 0) {
                return wire_error(ctx, at, "field number 0");
            }
            if (skip_group(ctx, r, f->number, depth + 1) < 0) {
                return -1;
            }
            continue;
        }
        if (read_value(ctx, r, at, f) < 0) {
            return -1;
        }
        if (f->number == 0) {
            return wire_error(ctx, at, "field number 0");
        }
        return 1;
    }
}

/*
 * The next field of the message in `r`: 1 = *f holds it, 0 = end of the message, -1 = error.
 * `depth` is the depth of the message being read. Groups are skipped here (they are never a field
 * we use). A field whose wire type does not match its declared type is returned as read; callers
 * check the wire type and ignore a mismatch, as upb keeps such a field among the unknown ones.
 *
 * Inline fast path for what OTLP exporters send nearly always: a one-byte tag (field numbers 1-15)
 * followed by a one- or two-byte length or varint, or by a fixed64. Anything else, including every
 * error, goes through next_field_slow, which applies the same rules in full.
 */
static inline int
next_field(Ctx *ctx, Reader *r, Field *f, int depth)
{
    const uint8_t *p = r->p;
    Py_ssize_t left = r->end - p;
    if (left >= 2 && p[0] < 0x80 && p[0] >= 8) {
        int wire_type = p[0] & 7;
        uint64_t value;
        const uint8_t *after;
        if (wire_type == WT_LEN || wire_type == WT_VARINT) {
            if (p[1] < 0x80) {
                value = p[1];
                after = p + 2;
            }
            else if (left >= 3 && p[2] < 0x80) {
                value = (uint64_t)(p[1] & 0x7f) | (uint64_t)p[2] << 7;
                after = p + 3;
            }
            else {
                return next_field_slow(ctx, r, f, depth);
            }
            f->number = p[0] >> 3;
            f->wire_type = wire_type;
            if (wire_type == WT_VARINT) {
                f->value = value;
                r->p = after;
                return 1;
            }
            if ((Py_ssize_t)value <= r->end - after) {
                f->data = after;
                f->len = (Py_ssize_t)value;
                r->p = after + value;
                return 1;
            }
        }
        else if (wire_type == WT_I64 && left >= 9) {
            f->number = p[0] >> 3;
            f->wire_type = WT_I64;
            f->value = load_le64(p + 1);
            r->p = p + 9;
            return 1;
        }
    }
    return next_field_slow(ctx, r, f, depth);
}

/* ======================================================================================== */
/* 3. Text: UTF-8 validation, cleaning, JSON strings, numbers                              */
/* ======================================================================================== */

/* The high bit of each byte of `w` that is below 0x20 (NUL included), '"' or '\\': the bytes a JSON
 * string cannot hold as they are. Exact for "is there any" (the usual has-less / has-zero tricks). */
static uint64_t
json_special_bits(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t below_space = (w - ones * 0x20) & ~w & highs;
    uint64_t q = w ^ (ones * '"');
    uint64_t quote = (q - ones) & ~q & highs;
    uint64_t b = w ^ (ones * '\\');
    uint64_t backslash = (b - ones) & ~b & highs;
    return below_space | quote | backslash;
}

/* What utf8_scan found out about a string. */
enum { UTF8_VALID = 1, UTF8_ASCII = 2, UTF8_PLAIN = 4 };

/*
 * Strict UTF-8 as upb checks string fields: no overlong forms, no surrogates, nothing above U+10FFFF.
 * Returns 0 when invalid, else UTF8_VALID plus UTF8_ASCII when the string is pure ASCII (its str is
 * then a plain copy) and UTF8_PLAIN when no byte needs a JSON escape (it is then written with one
 * memcpy, and has no NUL to replace). Runs of ASCII are checked 8 bytes at a time.
 */
static int
utf8_scan(const uint8_t *s, Py_ssize_t n)
{
    const uint64_t highs = 0x8080808080808080ULL;
    Py_ssize_t i = 0;
    int ascii = 1;
    uint64_t special = 0;
    while (i < n) {
        uint64_t word;
        Py_ssize_t take;
        if (n - i >= 8) {
            memcpy(&word, s + i, 8);
            take = 8;
        }
        else if (i > 0 && n >= 8) {
            /* The last, partial word: the 8 bytes ending the string, re-reading some checked ones. */
            memcpy(&word, s + n - 8, 8);
            take = n - i;
        }
        else {
            /* A string shorter than 8 bytes, padded with spaces (neither non-ASCII nor special). */
            word = 0x2020202020202020ULL;
            take = n - i;
            for (Py_ssize_t k = 0; k < take; k++) {
                ((uint8_t *)&word)[k] = s[i + k];
            }
        }
        if (!(word & highs)) {
            special |= json_special_bits(word);
            i += take;
            continue;
        }
        /* This word holds a non-ASCII byte: one character at a time until past it. */
        uint8_t c = s[i];
        if (c < 0x80) {
            special |= c < 0x20 || c == '"' || c == '\\';
            i++;
            continue;
        }
        ascii = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80) {
                return 0;
            }
            i += 2;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            if (n - i < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) {
                return 0;
            }
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F)) {
                return 0; /* overlong, or a surrogate */
            }
            i += 3;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            if (n - i < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80) {
                return 0;
            }
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F)) {
                return 0; /* overlong, or above U+10FFFF */
            }
            i += 4;
        }
        else {
            return 0;
        }
    }
    return UTF8_VALID | (ascii ? UTF8_ASCII : 0) | (special ? 0 : UTF8_PLAIN);
}

/* A string field of the request, checked as valid UTF-8 when it was read. */
typedef struct {
    const uint8_t *ptr;
    Py_ssize_t len;
    int ascii; /* pure ASCII */
    int plain; /* no byte needs a JSON escape (so no NUL either) */
} Str;

static const uint8_t EMPTY[1] = {0};
static const Str EMPTY_STR = {EMPTY, 0, 1, 1};

/* A string field: upb refuses the whole request when one is not valid UTF-8, every occurrence
 * counting (also one a later occurrence replaces). */
static int
read_str(Ctx *ctx, const Field *f, Str *out)
{
    int kind = utf8_scan(f->data, f->len);
    if (kind == 0) {
        return wire_error(ctx, f->data, "invalid UTF-8 in a string field");
    }
    out->ptr = f->data;
    out->len = f->len;
    out->ascii = (kind & UTF8_ASCII) != 0;
    out->plain = (kind & UTF8_PLAIN) != 0;
    return 0;
}

/* A string field nothing is made of (schema URLs, entity refs): only checked. */
static int
check_str(Ctx *ctx, const Field *f)
{
    Str unused;
    return read_str(ctx, f, &unused);
}

/*
 * A string after attributes.clean_text: NUL characters become U+FFFD (counted once per string),
 * then the UTF-8 size, measured after that replacement, is capped at the limit: the longest prefix of
 * whole characters that fits is kept and "…[truncated N bytes]" appended, N counting the bytes cut.
 * The text itself is never copied here; writers apply the rules while copying.
 */
typedef struct {
    const uint8_t *raw; /* valid UTF-8 */
    Py_ssize_t keep;    /* bytes of raw that are kept */
    Py_ssize_t cut;     /* bytes removed (after NUL replacement), or -1 when nothing was cut */
    int has_nul;
    int ascii;          /* raw is pure ASCII */
    int plain;          /* raw needs no JSON escape */
} Text;

static void
text_clean(const Str *str, Py_ssize_t limit, Stats *stats, Text *t)
{
    const uint8_t *raw = str->ptr;
    Py_ssize_t len = str->len;
    Py_ssize_t nuls = 0;
    const uint8_t *p = raw, *end = raw + len;
    while (!str->plain && p < end && (p = memchr(p, 0, (size_t)(end - p))) != NULL) {
        nuls++;
        p++;
    }
    t->raw = raw;
    t->keep = len;
    t->cut = -1;
    t->has_nul = nuls > 0;
    t->ascii = str->ascii;
    t->plain = str->plain;
    if (nuls && stats) {
        stats->nul_replaced++;
    }
    Py_ssize_t cleaned_len = len + 2 * nuls; /* U+FFFD is 3 bytes where NUL was 1 */
    if (cleaned_len <= limit) {
        return;
    }
    if (stats) {
        stats->truncated_values++;
    }
    Py_ssize_t kept_cleaned;
    if (!nuls) {
        /* Back up from the limit to the start of the character it falls in. */
        Py_ssize_t pos = limit;
        while (pos > 0 && (raw[pos] & 0xC0) == 0x80) {
            pos--;
        }
        t->keep = pos;
        kept_cleaned = pos;
    }
    else {
        Py_ssize_t pos = 0;
        kept_cleaned = 0;
        while (pos < len) {
            uint8_t c = raw[pos];
            Py_ssize_t raw_width = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            Py_ssize_t cleaned_width = c == 0 ? 3 : raw_width;
            if (kept_cleaned + cleaned_width > limit) {
                break;
            }
            kept_cleaned += cleaned_width;
            pos += raw_width;
        }
        t->keep = pos;
    }
    t->cut = cleaned_len - kept_cleaned;
}

static const char HEX_DIGITS[] = "0123456789abcdef";

/* A str from bytes known to be valid UTF-8: pure ASCII is copied, without a decoding pass. */
static PyObject *
utf8_str(const char *data, Py_ssize_t len, int ascii)
{
    if (!ascii) {
        return PyUnicode_DecodeUTF8(data, len, NULL);
    }
    PyObject *str = PyUnicode_New(len, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), data, (size_t)len);
    }
    return str;
}
static const char ELLIPSIS[] = "\xe2\x80\xa6"; /* U+2026, as in attributes.TRUNCATION_MARK */

static char *
put_u64(char *out, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        *out++ = digits[--n];
    }
    return out;
}

static char *
put_i64(char *out, int64_t v)
{
    if (v < 0) {
        *out++ = '-';
        return put_u64(out, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(out, (uint64_t)v);
}

/* "…[truncated N bytes]"; needs 40 bytes of room. */
static char *
put_marker(char *out, Py_ssize_t cut)
{
    memcpy(out, ELLIPSIS, 3);
    out += 3;
    memcpy(out, "[truncated ", 11);
    out += 11;
    out = put_u64(out, (uint64_t)cut);
    memcpy(out, " bytes]", 7);
    return out + 7;
}

/* Appends a cleaned string as a JSON string literal, escaped exactly as orjson escapes:
 * \" \\ \b \t \n \f \r, other control characters as \u00xx, everything else (non-ASCII included)
 * as is. NUL has become U+FFFD already (PostgreSQL's jsonb refuses \u0000). */
static int
json_put_text(Buf *out, const Text *t)
{
    if (buf_reserve(out, t->keep * 6 + 64) < 0) {
        return -1;
    }
    char *o = out->data + out->len;
    const uint8_t *s = t->raw, *end = t->raw + t->keep;
    if (!t->ascii || t->has_nul || t->cut >= 0) {
        out->non_ascii = 1; /* the text, U+FFFD or the marker's ellipsis */
    }
    *o++ = '"';
    if (t->plain) {
        memcpy(o, s, (size_t)t->keep);
        o += t->keep;
        s = end;
    }
    while (s < end) {
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (json_special_bits(w)) {
                break;
            }
            memcpy(o, s, 8);
            o += 8;
            s += 8;
        }
        if (s >= end) {
            break;
        }
        uint8_t c = *s++;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        switch (c) {
        case '"':
            *o++ = '\\';
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\b':
            *o++ = '\\';
            *o++ = 'b';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\f':
            *o++ = '\\';
            *o++ = 'f';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case 0:
            memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
            o += 3;
            break;
        default:
            memcpy(o, "\\u00", 4);
            o[4] = HEX_DIGITS[c >> 4];
            o[5] = HEX_DIGITS[c & 15];
            o += 6;
        }
    }
    if (t->cut >= 0) {
        o = put_marker(o, t->cut);
    }
    *o++ = '"';
    out->len = o - out->data;
    return 0;
}

/* A cleaned string as a Python str (the same value attributes.clean_text returns). */
static PyObject *
text_str(Ctx *ctx, const Text *t)
{
    if (!t->has_nul && t->cut < 0) {
        return charged_str(ctx, utf8_str((const char *)t->raw, t->keep, t->ascii));
    }
    Buf *b = &ctx->text;
    b->len = 0;
    if (buf_reserve(b, t->keep * 3 + 64) < 0) {
        return NULL;
    }
    char *o = b->data;
    for (Py_ssize_t i = 0; i < t->keep; i++) {
        if (t->raw[i] == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
        }
        else {
            *o++ = (char)t->raw[i];
        }
    }
    if (t->cut >= 0) {
        o = put_marker(o, t->cut);
    }
    b->len = o - b->data;
    return charged_str(ctx, PyUnicode_DecodeUTF8(b->data, b->len, NULL));
}

/* `clean_text(value) or None`. */
static PyObject *
text_str_or_none(Ctx *ctx, const Text *t)
{
    if (t->keep == 0 && t->cut < 0) {
        Py_RETURN_NONE;
    }
    return text_str(ctx, t);
}

static int
json_put_hex(Buf *out, const uint8_t *s, Py_ssize_t n)
{
    if (buf_reserve(out, 2 * n + 2) < 0) {
        return -1;
    }
    char *o = out->data + out->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        *o++ = HEX_DIGITS[s[i] >> 4];
        *o++ = HEX_DIGITS[s[i] & 15];
    }
    *o++ = '"';
    out->len = o - out->data;
    return 0;
}

static int
json_put_u64(Buf *out, uint64_t v)
{
    if (buf_reserve(out, 24) < 0) {
        return -1;
    }
    out->len = put_u64(out->data + out->len, v) - out->data;
    return 0;
}

static int
json_put_i64(Buf *out, int64_t v)
{
    if (buf_reserve(out, 24) < 0) {
        return -1;
    }
    out->len = put_i64(out->data + out->len, v) - out->data;
    return 0;
}

/* A double as Python's repr writes it (shortest round trip), so jsonb stores the value orjson would;
 * NaN and ±Infinity, which JSON lacks, as the strings attributes.finite_or_label gives. */
static int
json_put_double(Buf *out, double v, Stats *stats)
{
    if (!isfinite(v)) {
        if (stats) {
            stats->non_finite_numbers++;
        }
        return buf_puts(out, isnan(v) ? "\"NaN\"" : v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    }
    char *repr = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (repr == NULL) {
        return -1;
    }
    int rc = buf_puts(out, repr);
    PyMem_Free(repr);
    return rc;
}

/* Bytes as OTLP/JSON writes them (standard base64, padded); over the limit, the first `limit` bytes
 * and the truncation marker, as attributes.any_value does. */
static int
json_put_base64(Ctx *ctx, Buf *out, const uint8_t *s, Py_ssize_t n, Stats *stats)
{
    static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    Py_ssize_t keep = n, cut = -1;
    if (n > ctx->limit) {
        keep = ctx->limit;
        cut = n - ctx->limit;
        if (stats) {
            stats->truncated_values++;
        }
    }
    if (buf_reserve(out, (keep + 2) / 3 * 4 + 64) < 0) {
        return -1;
    }
    char *o = out->data + out->len;
    *o++ = '"';
    Py_ssize_t i = 0;
    for (; keep - i >= 3; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = ALPHABET[v >> 18];
        *o++ = ALPHABET[(v >> 12) & 63];
        *o++ = ALPHABET[(v >> 6) & 63];
        *o++ = ALPHABET[v & 63];
    }
    if (keep - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = ALPHABET[v >> 18];
        *o++ = ALPHABET[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    }
    else if (keep - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = ALPHABET[v >> 18];
        *o++ = ALPHABET[(v >> 12) & 63];
        *o++ = ALPHABET[(v >> 6) & 63];
        *o++ = '=';
    }
    if (cut >= 0) {
        o = put_marker(o, cut);
        out->non_ascii = 1;
    }
    *o++ = '"';
    out->len = o - out->data;
    return 0;
}

/* ======================================================================================== */
/* 4. Value encoders                                                                         */
/* ======================================================================================== */

/* Which member of the AnyValue oneof is set (field numbers of common.proto). */
enum {
    AV_EMPTY = 0,
    AV_STRING = 1,
    AV_BOOL = 2,
    AV_INT = 3,
    AV_DOUBLE = 4,
    AV_ARRAY = 5,
    AV_KVLIST = 6,
    AV_BYTES = 7,
    AV_STRINDEX = 8, /* string_value_strindex: no value the reference reads (None, stored as null) */
};

typedef struct {
    int kind;
    Str str;             /* string / bytes (bytes are not UTF-8-checked: only ptr and len count) */
    uint64_t bits;       /* bool / int / double */
    Segs parts;          /* array / kvlist: the segments of the merged ArrayValue / KeyValueList */
} AnyValue;

static int encode_any(Ctx *ctx, const Segs *segs, int depth, Stats *stats, PyObject **py);
static int encode_array(Ctx *ctx, const Segs *parts, int depth, Stats *stats);
static int encode_map(Ctx *ctx, const Segs *parent, uint32_t field_number, int kv_depth, Stats *stats,
                      PyObject *wanted);

/*
 * Checks an array or kvlist that a later member of the same oneof replaced. upb parsed it before it
 * was replaced, so its errors (bad UTF-8, nesting) still refuse the request; nothing of it is kept
 * or counted.
 */
static int
check_replaced(Ctx *ctx, int kind, const Segs *parts, int depth)
{
    Py_ssize_t mark = ctx->json.len;
    int rc;
    if (kind == AV_ARRAY) {
        rc = encode_array(ctx, parts, depth + 1, NULL);
    }
    else if (depth + 1 > MAX_DEPTH) {
        rc = depth_error(ctx, parts->first.ptr);
    }
    else {
        rc = encode_map(ctx, parts, 1, depth + 2, NULL, NULL);
    }
    ctx->json.len = mark;
    return rc;
}

/* Sets the oneof to a new member; a replaced array/kvlist is checked and forgotten. */
static int
any_switch(Ctx *ctx, AnyValue *av, int kind, int depth)
{
    if (av->kind == kind) {
        return 0;
    }
    if (av->kind == AV_ARRAY || av->kind == AV_KVLIST) {
        int rc = check_replaced(ctx, av->kind, &av->parts, depth);
        segs_free(&av->parts);
        if (rc < 0) {
            return -1;
        }
    }
    av->kind = kind;
    return 0;
}

/*
 * Resolves the oneof of an AnyValue given as the segments of its merged occurrences, as upb merges
 * them: the last member set wins; an array or kvlist set again while already set is merged (its
 * values appended). `depth` is the AnyValue's own depth. The caller frees av->parts.
 */
static int
any_resolve(Ctx *ctx, const Segs *segs, int depth, AnyValue *av)
{
    memset(av, 0, sizeof(*av));
    if (segs->n && depth > MAX_DEPTH) {
        return depth_error(ctx, segs->first.ptr);
    }
    for (Py_ssize_t k = 0; k < segs->n; k++) {
        Reader r = reader_of(segs_get(segs, k));
        Field f;
        int rc;
        while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
            switch (f.number) {
            case AV_STRING:
                if (f.wire_type != WT_LEN) {
                    break;
                }
                if (read_str(ctx, &f, &av->str) < 0 || any_switch(ctx, av, AV_STRING, depth) < 0) {
                    return -1;
                }
                break;
            case AV_BYTES:
                if (f.wire_type != WT_LEN) {
                    break;
                }
                if (any_switch(ctx, av, AV_BYTES, depth) < 0) {
                    return -1;
                }
                av->str.ptr = f.data;
                av->str.len = f.len;
                break;
            case AV_BOOL:
            case AV_INT:
            case AV_STRINDEX:
                if (f.wire_type != WT_VARINT) {
                    break;
                }
                if (any_switch(ctx, av, (int)f.number, depth) < 0) {
                    return -1;
                }
                av->bits = f.value;
                break;
            case AV_DOUBLE:
                if (f.wire_type != WT_I64) {
                    break;
                }
                if (any_switch(ctx, av, AV_DOUBLE, depth) < 0) {
                    return -1;
                }
                av->bits = f.value;
                break;
            case AV_ARRAY:
            case AV_KVLIST:
                if (f.wire_type != WT_LEN) {
                    break;
                }
                if (any_switch(ctx, av, (int)f.number, depth) < 0 || segs_push(&av->parts, f.data, f.len) < 0) {
                    return -1;
                }
                break;
            default:
                break;
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Appends the JSON of one AnyValue (attributes.any_value, then orjson). With `py`, also returns the
 * Python value any_value gives, for the attributes Python reads. */
static int
encode_any(Ctx *ctx, const Segs *segs, int depth, Stats *stats, PyObject **py)
{
    AnyValue av;
    Buf *out = &ctx->json;
    Py_ssize_t start = out->len;
    maybe_yield(ctx);
    int rc = any_resolve(ctx, segs, depth, &av);
    if (rc < 0) {
        segs_free(&av.parts);
        return -1;
    }
    switch (av.kind) {
    case AV_STRING: {
        Text t;
        text_clean(&av.str, ctx->limit, stats, &t);
        rc = json_put_text(out, &t);
        if (rc == 0 && py) {
            *py = text_str(ctx, &t);
            rc = *py ? 0 : -1;
        }
        break;
    }
    case AV_BOOL:
        rc = buf_puts(out, av.bits ? "true" : "false");
        if (rc == 0 && py) {
            *py = Py_NewRef(av.bits ? Py_True : Py_False);
        }
        break;
    case AV_INT:
        rc = json_put_i64(out, (int64_t)av.bits);
        if (rc == 0 && py) {
            *py = PyLong_FromLongLong((long long)(int64_t)av.bits);
            rc = *py ? 0 : -1;
        }
        break;
    case AV_DOUBLE: {
        double v;
        memcpy(&v, &av.bits, sizeof v);
        rc = json_put_double(out, v, stats);
        if (rc == 0 && py) {
            if (isfinite(v)) {
                *py = PyFloat_FromDouble(v);
            }
            else {
                *py = Py_NewRef(isnan(v) ? ctx->cfg->nan_label : v > 0 ? ctx->cfg->inf_label : ctx->cfg->ninf_label);
            }
            rc = *py ? 0 : -1;
        }
        break;
    }
    case AV_BYTES:
        rc = json_put_base64(ctx, out, av.str.ptr, av.str.len, stats);
        if (rc == 0 && py) {
            /* base64 and the marker need no escaping: the literal minus its quotes is the value. */
            *py = charged_str(ctx, utf8_str(out->data + start + 1, out->len - start - 2, av.str.len <= ctx->limit));
            rc = *py ? 0 : -1;
        }
        break;
    case AV_ARRAY:
    case AV_KVLIST:
        if (av.kind == AV_ARRAY) {
            rc = encode_array(ctx, &av.parts, depth + 1, stats);
        }
        else if (depth + 1 > MAX_DEPTH) {
            rc = depth_error(ctx, av.parts.first.ptr);
        }
        else {
            /* The KeyValueList is at depth + 1, its KeyValues at depth + 2. */
            rc = encode_map(ctx, &av.parts, 1, depth + 2, stats, NULL);
        }
        if (rc == 0 && py) {
            /* Rare (an array under a key Python reads, e.g. finish reasons): parse back the JSON just
             * written, which is exactly the value's JSON. Charged before it is made: the parsed
             * value may take up to 24 bytes per byte of JSON (`{},` becomes a dict and a list slot). */
            if (charge_output(ctx, (out->len - start) * 25) < 0) {
                rc = -1;
                break;
            }
            PyObject *fragment = PyBytes_FromStringAndSize(out->data + start, out->len - start);
            *py = fragment ? PyObject_CallOneArg(ctx->cfg->loads, fragment) : NULL;
            Py_XDECREF(fragment);
            rc = *py ? 0 : -1;
        }
        break;
    default: /* no member set, or string_value_strindex */
        rc = buf_puts(out, "null");
        if (rc == 0 && py) {
            *py = Py_NewRef(Py_None);
        }
    }
    segs_free(&av.parts);
    return rc;
}

/* An ArrayValue (its merged segments) at `depth` -> JSON array. */
static int
encode_array(Ctx *ctx, const Segs *parts, int depth, Stats *stats)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, parts->first.ptr);
    }
    if (buf_putc(&ctx->json, '[') < 0) {
        return -1;
    }
    int first = 1;
    for (Py_ssize_t k = 0; k < parts->n; k++) {
        Reader r = reader_of(segs_get(parts, k));
        Field f;
        int rc;
        while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
            if (f.number != 1 || f.wire_type != WT_LEN) {
                continue;
            }
            if (!first && buf_putc(&ctx->json, ',') < 0) {
                return -1;
            }
            first = 0;
            Segs item = segs_of(f.data, f.len);
            if (encode_any(ctx, &item, depth + 1, stats, NULL) < 0) {
                return -1;
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return buf_putc(&ctx->json, ']');
}

static int
kv_push(Ctx *ctx)
{
    if (ctx->kv_len == ctx->kv_cap) {
        Py_ssize_t cap = ctx->kv_cap ? ctx->kv_cap * 2 : 64;
        KvEntry *kv = PyMem_Realloc(ctx->kv, (size_t)cap * sizeof(KvEntry));
        if (kv == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ctx->kv = kv;
        ctx->kv_cap = cap;
        if (charge_buffers(ctx) < 0) {
            return -1;
        }
    }
    memset(&ctx->kv[ctx->kv_len], 0, sizeof(KvEntry));
    ctx->kv_len++;
    return 0;
}

static void
kv_pop_to(Ctx *ctx, Py_ssize_t base)
{
    while (ctx->kv_len > base) {
        KvEntry *e = &ctx->kv[--ctx->kv_len];
        PyMem_Free(e->owned);
        segs_free(&e->value);
    }
}

/* Reads one KeyValue (at `depth`) onto the entry stack: its key, with NUL replaced (map_finish counts
 * it, once per occurrence as key_values does), and the segments of its value, encoded later. */
static int
kv_collect(Ctx *ctx, const Field *kv_field, int depth)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, kv_field->data);
    }
    maybe_yield(ctx);
    if (kv_push(ctx) < 0) {
        return -1;
    }
    Py_ssize_t index = ctx->kv_len - 1;
    Str key = EMPTY_STR;
    Reader r = {kv_field->data, kv_field->data + kv_field->len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.number == 1 && f.wire_type == WT_LEN) {
            if (read_str(ctx, &f, &key) < 0) {
                return -1;
            }
        }
        else if (f.number == 2 && f.wire_type == WT_LEN) {
            if (segs_push(&ctx->kv[index].value, f.data, f.len) < 0) {
                return -1;
            }
        }
    }
    if (rc < 0) {
        return -1;
    }
    KvEntry *e = &ctx->kv[index];
    e->key = key.ptr;
    e->key_len = key.len;
    e->key_ascii = key.ascii;
    e->key_plain = key.plain;
    if (!key.plain && memchr(key.ptr, 0, (size_t)key.len)) {
        e->owned = PyMem_Malloc((size_t)key.len * 3);
        if (e->owned == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        char *o = e->owned;
        for (Py_ssize_t i = 0; i < key.len; i++) {
            if (key.ptr[i] == 0) {
                memcpy(o, "\xef\xbf\xbd", 3);
                o += 3;
            }
            else {
                *o++ = (char)key.ptr[i];
            }
        }
        e->key = (const uint8_t *)e->owned;
        e->key_len = o - e->owned;
        e->key_ascii = 0; /* U+FFFD */
        e->key_plain = 0;
    }
    return 0;
}

static int
kv_key_equal(const KvEntry *a, const KvEntry *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, (size_t)a->key_len) == 0;
}

/* A key and its position in the map, for sorting. */
typedef struct {
    const uint8_t *key;
    Py_ssize_t len;
    Py_ssize_t index;
} KeyRef;

/* Order by key bytes, then by position (so equal keys keep their order). */
static int
keyref_before(const KeyRef *a, const KeyRef *b)
{
    Py_ssize_t common = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, (size_t)common);
    if (c != 0) {
        return c < 0;
    }
    if (a->len != b->len) {
        return a->len < b->len;
    }
    return a->index < b->index;
}

/* Bottom-up merge sort: O(n log n) comparisons whatever the keys. A hash table with a fixed hash
 * function could be made quadratic by a client sending keys that collide; this cannot. */
static int
sort_keyrefs(KeyRef *items, Py_ssize_t n)
{
    KeyRef *merged = PyMem_Malloc((size_t)n * sizeof(KeyRef));
    if (merged == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t width = 1; width < n; width *= 2) {
        for (Py_ssize_t lo = 0; lo + width < n; lo += 2 * width) {
            Py_ssize_t mid = lo + width, hi = lo + 2 * width < n ? lo + 2 * width : n;
            Py_ssize_t a = lo, b = mid, out = lo;
            while (a < mid && b < hi) {
                merged[out++] = keyref_before(&items[b], &items[a]) ? items[b++] : items[a++];
            }
            while (a < mid) {
                merged[out++] = items[a++];
            }
            while (b < hi) {
                merged[out++] = items[b++];
            }
            memcpy(items + lo, merged + lo, (size_t)(hi - lo) * sizeof(KeyRef));
        }
    }
    PyMem_Free(merged);
    return 0;
}

/*
 * Groups equal keys, as a dict does: group[i] = the first entry with entry i's key; last[g] = the last
 * entry of group g (its value wins). Pairwise comparison for short maps; for long ones a sort, so
 * that no choice of keys makes the work quadratic.
 */
static int
group_keys(const KvEntry *entries, Py_ssize_t n, Py_ssize_t *group, Py_ssize_t *last)
{
    if (n <= 16) {
        for (Py_ssize_t i = 0; i < n; i++) {
            group[i] = i;
            for (Py_ssize_t j = 0; j < i; j++) {
                if (group[j] == j && kv_key_equal(&entries[j], &entries[i])) {
                    group[i] = j;
                    break;
                }
            }
        }
    }
    else {
        KeyRef *refs = PyMem_Malloc((size_t)n * sizeof(KeyRef));
        if (refs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            refs[i].key = entries[i].key;
            refs[i].len = entries[i].key_len;
            refs[i].index = i;
        }
        if (sort_keyrefs(refs, n) < 0) {
            PyMem_Free(refs);
            return -1;
        }
        /* Each run of equal keys is sorted by position: its first item is the first occurrence. */
        Py_ssize_t run = 0;
        for (Py_ssize_t k = 1; k <= n; k++) {
            if (k < n && refs[k].len == refs[run].len &&
                memcmp(refs[k].key, refs[run].key, (size_t)refs[k].len) == 0) {
                continue;
            }
            for (Py_ssize_t j = run; j < k; j++) {
                group[refs[j].index] = refs[run].index;
            }
            run = k;
        }
        PyMem_Free(refs);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        last[group[i]] = i;
    }
    return 0;
}

/* The key object Python asked for with these bytes, or NULL. */
static PyObject *
wanted_key(TraceDecoder *cfg, const uint8_t *key, Py_ssize_t len)
{
    if (len == 0 || len > MAX_WANTED_KEY_LEN) {
        return NULL;
    }
    Py_ssize_t start = cfg->by_len_start[len], count = cfg->by_len_count[len];
    for (Py_ssize_t i = start; i < start + count; i++) {
        const char *candidate = cfg->wanted[i].utf8;
        if (candidate[len - 1] == (char)key[len - 1] && memcmp(candidate, key, (size_t)len) == 0) {
            return cfg->wanted[i].str;
        }
    }
    return NULL;
}

/*
 * The KeyValues on the entry stack from `base` up -> JSON object, as attributes.key_values builds the
 * dict and orjson writes it: keys in order of first occurrence, each with the value of its last
 * occurrence (a later duplicate wins). Values a duplicate replaced are still encoded (then dropped)
 * because key_values cleans them too: they count in the statistics, and their errors refuse the
 * request as upb's would. The entries sit at `kv_depth` and are popped when done. With `wanted`, the
 * values of the keys Python reads (the decoder's keys) are also stored in that dict.
 */
static int
map_finish(Ctx *ctx, Py_ssize_t base, int kv_depth, Stats *stats, PyObject *wanted)
{
    Py_ssize_t n = ctx->kv_len - base;
    if (n == 0) {
        return buf_puts(&ctx->json, "{}"); /* (and ctx->kv may still be NULL: no pointer arithmetic on it) */
    }
    Py_ssize_t small[64];
    Py_ssize_t *group = small;
    if (n > 32) {
        group = PyMem_Malloc((size_t)n * 2 * sizeof(Py_ssize_t));
        if (group == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t *last = group + n;
    int rc = -1;
    if (stats) {
        for (Py_ssize_t i = 0; i < n; i++) {
            stats->nul_replaced += ctx->kv[base + i].owned != NULL;
        }
    }
    if (group_keys(ctx->kv + base, n, group, last) < 0 || buf_putc(&ctx->json, '{') < 0) {
        goto done;
    }
    int first = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (group[i] != i) {
            continue; /* a later occurrence of a key already written */
        }
        /* ctx->kv may move while values are encoded (nested maps push entries): copy what we use. */
        KvEntry entry = ctx->kv[base + i];
        Segs value = ctx->kv[base + last[i]].value;
        if (!first && buf_putc(&ctx->json, ',') < 0) {
            goto done;
        }
        first = 0;
        Text key = {entry.key, entry.key_len, -1, 0, entry.key_ascii, entry.key_plain};
        if (json_put_text(&ctx->json, &key) < 0 || buf_putc(&ctx->json, ':') < 0) {
            goto done;
        }
        PyObject *key_obj = wanted ? wanted_key(ctx->cfg, entry.key, entry.key_len) : NULL;
        PyObject *py = NULL;
        if (encode_any(ctx, &value, kv_depth + 1, stats, key_obj ? &py : NULL) < 0) {
            goto done;
        }
        if (py) {
            int set = PyDict_SetItem(wanted, key_obj, py);
            Py_DECREF(py);
            if (set < 0) {
                goto done;
            }
        }
    }
    if (buf_putc(&ctx->json, '}') < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (last[group[i]] == i) {
            continue;
        }
        Py_ssize_t mark = ctx->json.len;
        Segs value = ctx->kv[base + i].value;
        if (encode_any(ctx, &value, kv_depth + 1, stats, NULL) < 0) {
            goto done;
        }
        ctx->json.len = mark;
    }
    rc = 0;
done:
    if (group != small) {
        PyMem_Free(group);
    }
    if (rc == 0) {
        kv_pop_to(ctx, base);
    }
    return rc;
}

/* The KeyValues of a message: the length-delimited occurrences of `field_number` in the `parent`
 * segments, at `kv_depth` -> JSON object (see map_finish). */
static int
encode_map(Ctx *ctx, const Segs *parent, uint32_t field_number, int kv_depth, Stats *stats, PyObject *wanted)
{
    Py_ssize_t base = ctx->kv_len;
    for (Py_ssize_t k = 0; k < parent->n; k++) {
        Reader r = reader_of(segs_get(parent, k));
        Field f;
        int rc;
        while ((rc = next_field(ctx, &r, &f, kv_depth - 1)) > 0) {
            if (f.number == field_number && f.wire_type == WT_LEN && kv_collect(ctx, &f, kv_depth) < 0) {
                return -1;
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return map_finish(ctx, base, kv_depth, stats, wanted);
}

/* Checks a map nobody stores (scope attributes, rejected spans): errors count, nothing else. */
static int
check_map(Ctx *ctx, const Segs *parent, uint32_t field_number, int kv_depth)
{
    Py_ssize_t mark = ctx->json.len;
    int rc = encode_map(ctx, parent, field_number, kv_depth, NULL, NULL);
    ctx->json.len = mark;
    return rc;
}

/* Starts a new JSON document in ctx->json. */
static void
json_begin(Ctx *ctx)
{
    ctx->json.len = 0;
    ctx->json.non_ascii = 0;
}

/* The JSON document in ctx->json as a str (it is valid UTF-8 by construction). */
static PyObject *
json_str(Ctx *ctx)
{
    return charged_str(ctx, utf8_str(ctx->json.data, ctx->json.len, !ctx->json.non_ascii));
}

/* ======================================================================================== */
/* 5. Span builder                                                                           */
/* ======================================================================================== */

static PyObject *
hex_str(const uint8_t *s, Py_ssize_t n)
{
    PyObject *str = PyUnicode_New(2 * n, 127);
    if (str == NULL) {
        return NULL;
    }
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(str);
    for (Py_ssize_t i = 0; i < n; i++) {
        *o++ = (Py_UCS1)HEX_DIGITS[s[i] >> 4];
        *o++ = (Py_UCS1)HEX_DIGITS[s[i] & 15];
    }
    return str;
}

/* Days since 1970-01-01 -> civil date (H. Hinnant's algorithm; days >= 0 here). */
static void
civil_from_days(int64_t days, int *year, int *month, int *day)
{
    days += 719468;
    int64_t era = days / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

/* pgvalues.timestamp_from_unix_nanos: aware UTC datetime, truncated to microseconds. uint64
 * nanoseconds end in year 2554, well inside datetime's range. */
static PyObject *
datetime_from_unix_nanos(uint64_t nanos)
{
    uint64_t micros = nanos / 1000;
    uint64_t seconds = micros / 1000000;
    int64_t days = (int64_t)(seconds / 86400);
    int second_of_day = (int)(seconds % 86400);
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    return PyDateTimeAPI->DateTime_FromDateAndTime(year, month, day, second_of_day / 3600, second_of_day / 60 % 60,
                                                   second_of_day % 60, (int)(micros % 1000000),
                                                   PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
}

/* The fields of a Span a row needs; the last occurrence of each wins, as in protobuf. */
typedef struct {
    const uint8_t *trace_id, *span_id, *parent;
    Py_ssize_t trace_id_len, span_id_len, parent_len;
    Str name, trace_state;
    int32_t kind;
    uint64_t start, end;
    Segs status;
    int has_events, has_links;
    Py_ssize_t attrs_base; /* the span's attributes are on the entry stack from here up */
    Str status_message;
    int32_t status_code;
} SpanFields;

/* Span.status (merged segments) at `depth`: message and code, last occurrence wins. */
static int
read_status(Ctx *ctx, SpanFields *s, int depth)
{
    s->status_message = EMPTY_STR;
    s->status_code = 0;
    if (s->status.n && depth > MAX_DEPTH) {
        return depth_error(ctx, s->status.first.ptr);
    }
    for (Py_ssize_t k = 0; k < s->status.n; k++) {
        Reader r = reader_of(segs_get(&s->status, k));
        Field f;
        int rc;
        while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
            if (f.number == 2 && f.wire_type == WT_LEN) {
                if (read_str(ctx, &f, &s->status_message) < 0) {
                    return -1;
                }
            }
            else if (f.number == 3 && f.wire_type == WT_VARINT) {
                s->status_code = (int32_t)(uint32_t)f.value; /* enums are int32: upb keeps the low 32 bits */
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* One pass over a Span at `depth`: scalar fields, string checks, status; the attributes are
 * collected onto the entry stack (encoded once the span is known to be valid). */
static int
read_span(Ctx *ctx, Seg seg, int depth, SpanFields *s)
{
    memset(s, 0, sizeof(*s));
    s->trace_id = s->span_id = s->parent = EMPTY;
    s->name = s->trace_state = EMPTY_STR;
    s->attrs_base = ctx->kv_len;
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, seg.ptr);
    }
    Reader r = reader_of(seg);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        int len_field = f.wire_type == WT_LEN;
        switch (f.number) {
        case 1:
            if (len_field) {
                s->trace_id = f.data;
                s->trace_id_len = f.len;
            }
            break;
        case 2:
            if (len_field) {
                s->span_id = f.data;
                s->span_id_len = f.len;
            }
            break;
        case 3:
            if (len_field && read_str(ctx, &f, &s->trace_state) < 0) {
                return -1;
            }
            break;
        case 4:
            if (len_field) {
                s->parent = f.data;
                s->parent_len = f.len;
            }
            break;
        case 5:
            if (len_field && read_str(ctx, &f, &s->name) < 0) {
                return -1;
            }
            break;
        case 6:
            if (f.wire_type == WT_VARINT) {
                s->kind = (int32_t)(uint32_t)f.value;
            }
            break;
        case 7:
            if (f.wire_type == WT_I64) {
                s->start = f.value;
            }
            break;
        case 8:
            if (f.wire_type == WT_I64) {
                s->end = f.value;
            }
            break;
        case 9:
            if (len_field && kv_collect(ctx, &f, depth + 1) < 0) {
                return -1;
            }
            break;
        case 11:
            s->has_events |= len_field;
            break;
        case 13:
            s->has_links |= len_field;
            break;
        case 15:
            if (len_field && segs_push(&s->status, f.data, f.len) < 0) {
                return -1;
            }
            break;
        default: /* 10, 12, 14 dropped counts, 16 flags: unused */
            break;
        }
    }
    if (rc < 0) {
        return -1;
    }
    return read_status(ctx, s, depth + 1);
}

static int
all_zero(const uint8_t *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i]) {
            return 0;
        }
    }
    return 1;
}

/* traces.span_problem: why a span cannot be stored (a new str), NULL with no error when it can. */
static PyObject *
span_problem(const SpanFields *s)
{
    if (s->trace_id_len != 16) {
        return PyUnicode_FromFormat("trace_id has %zd bytes, expected 16", s->trace_id_len);
    }
    if (all_zero(s->trace_id, 16)) {
        return PyUnicode_FromString("trace_id is all zeros");
    }
    if (s->span_id_len != 8) {
        return PyUnicode_FromFormat("span_id has %zd bytes, expected 8", s->span_id_len);
    }
    if (all_zero(s->span_id, 8)) {
        return PyUnicode_FromString("span_id is all zeros");
    }
    if (s->parent_len && s->parent_len != 8) {
        return PyUnicode_FromFormat("parent_span_id has %zd bytes, expected 8 or none", s->parent_len);
    }
    if (s->start == 0) {
        return PyUnicode_FromString("start_time_unix_nano is missing");
    }
    if (s->end < s->start) {
        return PyUnicode_FromString("end_time_unix_nano is before start_time_unix_nano");
    }
    return NULL;
}

/* One Span.Event at `depth` -> JSON object (traces._events). */
static int
encode_event(Ctx *ctx, const Field *event, int depth, Stats *stats)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, event->data);
    }
    maybe_yield(ctx);
    uint64_t time = 0, dropped = 0;
    Str name = EMPTY_STR;
    Reader r = {event->data, event->data + event->len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.number == 1 && f.wire_type == WT_I64) {
            time = f.value;
        }
        else if (f.number == 2 && f.wire_type == WT_LEN) {
            if (read_str(ctx, &f, &name) < 0) {
                return -1;
            }
        }
        else if (f.number == 4 && f.wire_type == WT_VARINT) {
            dropped = (uint32_t)f.value;
        }
    }
    if (rc < 0) {
        return -1;
    }
    Buf *out = &ctx->json;
    Text t;
    text_clean(&name, ctx->limit, stats, &t);
    Segs self = segs_of(event->data, event->len);
    if (buf_puts(out, "{\"time_unix_nano\":") < 0 || json_put_u64(out, time) < 0 ||
        buf_puts(out, ",\"name\":") < 0 || json_put_text(out, &t) < 0 || buf_puts(out, ",\"attributes\":") < 0 ||
        encode_map(ctx, &self, 3, depth + 1, stats, NULL) < 0) {
        return -1;
    }
    if (dropped && (buf_puts(out, ",\"dropped_attributes_count\":") < 0 || json_put_u64(out, dropped) < 0)) {
        return -1;
    }
    return buf_putc(out, '}');
}

/* One Span.Link at `depth` -> JSON object (traces._links). */
static int
encode_link(Ctx *ctx, const Field *link, int depth, Stats *stats)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, link->data);
    }
    maybe_yield(ctx);
    const uint8_t *trace_id = EMPTY, *span_id = EMPTY;
    Py_ssize_t trace_id_len = 0, span_id_len = 0;
    Str trace_state = EMPTY_STR;
    Reader r = {link->data, link->data + link->len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.wire_type != WT_LEN) {
            continue;
        }
        if (f.number == 1) {
            trace_id = f.data;
            trace_id_len = f.len;
        }
        else if (f.number == 2) {
            span_id = f.data;
            span_id_len = f.len;
        }
        else if (f.number == 3) {
            if (read_str(ctx, &f, &trace_state) < 0) {
                return -1;
            }
        }
    }
    if (rc < 0) {
        return -1;
    }
    Buf *out = &ctx->json;
    Segs self = segs_of(link->data, link->len);
    if (buf_puts(out, "{\"trace_id\":") < 0 || json_put_hex(out, trace_id, trace_id_len) < 0 ||
        buf_puts(out, ",\"span_id\":") < 0 || json_put_hex(out, span_id, span_id_len) < 0 ||
        buf_puts(out, ",\"attributes\":") < 0 || encode_map(ctx, &self, 4, depth + 1, stats, NULL) < 0) {
        return -1;
    }
    if (trace_state.len) {
        Text t;
        text_clean(&trace_state, ctx->limit, stats, &t);
        if (buf_puts(out, ",\"trace_state\":") < 0 || json_put_text(out, &t) < 0) {
            return -1;
        }
    }
    return buf_putc(out, '}');
}

/* The span's events (field 11) or links (field 13) -> a JSON array in ctx->json. */
static int
encode_span_list(Ctx *ctx, Seg span, int depth, uint32_t field_number, Stats *stats)
{
    if (buf_putc(&ctx->json, '[') < 0) {
        return -1;
    }
    int first = 1;
    Reader r = reader_of(span);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.number != field_number || f.wire_type != WT_LEN) {
            continue;
        }
        if (!first && buf_putc(&ctx->json, ',') < 0) {
            return -1;
        }
        first = 0;
        rc = field_number == 11 ? encode_event(ctx, &f, depth + 1, stats) : encode_link(ctx, &f, depth + 1, stats);
        if (rc < 0) {
            return -1;
        }
    }
    if (rc < 0) {
        return -1;
    }
    return buf_putc(&ctx->json, ']');
}

/* The span's events or links as a JSON str, or None when it has none. */
static PyObject *
span_list_json(Ctx *ctx, Seg span, int depth, uint32_t field_number, int present)
{
    if (!present) {
        Py_RETURN_NONE;
    }
    json_begin(ctx);
    if (encode_span_list(ctx, span, depth, field_number, &ctx->stats) < 0) {
        return NULL;
    }
    return json_str(ctx);
}

/* A rejected span: counted and described; its attributes, events and links are still checked,
 * because upb would refuse the request for an error in them. */
static int
reject_span(Ctx *ctx, Seg seg, int depth, const SpanFields *s, PyObject *problem)
{
    ctx->rejected++;
    if (PyList_GET_SIZE(ctx->rejections) < ctx->max_errors) {
        PyObject *index = PyLong_FromSsize_t(ctx->span_index);
        PyObject *name = utf8_str((const char *)s->name.ptr, s->name.len, s->name.ascii);
        PyObject *trace_id = PyBytes_FromStringAndSize((const char *)s->trace_id, s->trace_id_len);
        PyObject *item = index && name && trace_id ? PyTuple_Pack(4, index, name, trace_id, problem) : NULL;
        int rc = item ? PyList_Append(ctx->rejections, item) : -1;
        Py_XDECREF(index);
        Py_XDECREF(name);
        Py_XDECREF(trace_id);
        Py_XDECREF(item);
        if (rc < 0) {
            return -1;
        }
    }
    Py_ssize_t mark = ctx->json.len;
    int rc = 0;
    if (map_finish(ctx, s->attrs_base, depth + 1, NULL, NULL) < 0 || (s->has_events && encode_span_list(ctx, seg, depth, 11, NULL) < 0) ||
        (s->has_links && encode_span_list(ctx, seg, depth, 13, NULL) < 0)) {
        rc = -1;
    }
    ctx->json.len = mark;
    return rc;
}

/*
 * One Span at `depth` -> appended to `spans` as the tuple traces.span_row takes after its shared
 * context: (attributes dict of the wanted keys, ts, end_ts, trace_id Uuid, span_id hex, parent hex or
 * None, name, kind, duration_ms, status_code, status_message, trace_state, attributes JSON, events
 * JSON, links JSON). A span span_problem refuses is recorded in ctx->rejections instead.
 */
static int
convert_span(Ctx *ctx, Seg seg, int depth, PyObject *spans)
{
    SpanFields s;
    PyObject *row = NULL, *problem = NULL;
    PyObject *items[15] = {0};
    int rc = -1;
    maybe_yield(ctx);
    if (read_span(ctx, seg, depth, &s) < 0) {
        goto done;
    }
    problem = span_problem(&s);
    if (problem == NULL && PyErr_Occurred()) {
        goto done;
    }
    if (problem == NULL && (s.start < ctx->window_earliest || s.start > ctx->window_latest)) {
        if (s.start < ctx->window_earliest) {
            ctx->too_old++;
        }
        else {
            ctx->too_new++;
        }
        /* Worded only when it will be shown (reject_span keeps the first max_errors). */
        problem = PyList_GET_SIZE(ctx->rejections) < ctx->max_errors
                      ? PyObject_CallFunction(ctx->window_problem, "K", (unsigned long long)s.start)
                      : Py_NewRef(Py_None);
        if (problem == NULL) {
            goto done;
        }
    }
    if (problem) {
        rc = reject_span(ctx, seg, depth, &s, problem);
        ctx->span_index++;
        goto done;
    }
    ctx->span_index++;
    TraceDecoder *cfg = ctx->cfg;
    Stats *stats = &ctx->stats;
    Text t;

    items[0] = PyDict_New();
    if (items[0] == NULL) {
        goto done;
    }
    json_begin(ctx);
    if (map_finish(ctx, s.attrs_base, depth + 1, stats, items[0]) < 0 || (items[12] = json_str(ctx)) == NULL) {
        goto done;
    }
    if ((items[1] = datetime_from_unix_nanos(s.start)) == NULL ||
        (items[2] = datetime_from_unix_nanos(s.end)) == NULL) {
        goto done;
    }
    items[3] = new_uuid(cfg, s.trace_id);
    if (items[3] == NULL || (items[4] = hex_str(s.span_id, 8)) == NULL) {
        goto done;
    }
    if (s.parent_len && !all_zero(s.parent, s.parent_len)) {
        items[5] = hex_str(s.parent, s.parent_len);
    }
    else {
        items[5] = Py_NewRef(Py_None);
    }
    text_clean(&s.name, ctx->limit, stats, &t);
    if (items[5] == NULL || (items[6] = text_str(ctx, &t)) == NULL) {
        goto done;
    }
    Py_ssize_t n_kinds = PyTuple_GET_SIZE(cfg->span_kinds), n_codes = PyTuple_GET_SIZE(cfg->status_codes);
    items[7] = Py_NewRef(PyTuple_GET_ITEM(cfg->span_kinds, s.kind >= 0 && s.kind < n_kinds ? s.kind : 0));
    items[8] = PyFloat_FromDouble((double)(s.end - s.start) / 1e6);
    if (items[8] == NULL) {
        goto done;
    }
    items[9] = Py_NewRef(
        PyTuple_GET_ITEM(cfg->status_codes, s.status_code >= 0 && s.status_code < n_codes ? s.status_code : 0));
    text_clean(&s.status_message, ctx->limit, stats, &t);
    if ((items[10] = text_str_or_none(ctx, &t)) == NULL) {
        goto done;
    }
    text_clean(&s.trace_state, ctx->limit, stats, &t);
    if ((items[11] = text_str_or_none(ctx, &t)) == NULL) {
        goto done;
    }
    if ((items[13] = span_list_json(ctx, seg, depth, 11, s.has_events)) == NULL ||
        (items[14] = span_list_json(ctx, seg, depth, 13, s.has_links)) == NULL) {
        goto done;
    }
    row = PyTuple_New(15);
    if (row == NULL) {
        goto done;
    }
    int atoms_only = 1;
    for (int i = 0; i < 15; i++) {
        atoms_only &= !PyObject_IS_GC(items[i]) || !PyObject_GC_IsTracked(items[i]);
        PyTuple_SET_ITEM(row, i, items[i]);
        items[i] = NULL;
    }
    if (atoms_only) {
        /* What the collector would conclude at its next pass (a tuple of untracked values cannot be in a
         * cycle): tens of thousands of these wait for Python to make rows of them, and a full pass
         * meanwhile would walk them all while holding the GIL. */
        PyObject_GC_UnTrack(row);
    }
    rc = PyList_Append(spans, row);
done:
    for (int i = 0; i < 15; i++) {
        Py_XDECREF(items[i]);
    }
    Py_XDECREF(row);
    Py_XDECREF(problem);
    segs_free(&s.status);
    return rc;
}

/* One ScopeSpans at `depth` -> (scope_name, scope_version, [span tuples]). Spans are converted as
 * they are met; the scope (which may come after them on the wire) is read at the end. */
static PyObject *
convert_scope_spans(Ctx *ctx, Seg seg, int depth)
{
    Segs scope = {0};
    PyObject *spans = NULL, *name = NULL, *version = NULL, *result = NULL;
    if (depth > MAX_DEPTH) {
        depth_error(ctx, seg.ptr);
        return NULL;
    }
    maybe_yield(ctx);
    spans = PyList_New(0);
    if (spans == NULL) {
        return NULL;
    }
    Reader r = reader_of(seg);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.wire_type != WT_LEN) {
            continue;
        }
        if (f.number == 1) {
            rc = segs_push(&scope, f.data, f.len);
        }
        else if (f.number == 2) {
            Seg span = {f.data, f.len};
            rc = convert_span(ctx, span, depth + 1, spans);
        }
        else if (f.number == 3) {
            rc = check_str(ctx, &f); /* schema_url */
        }
        if (rc < 0) {
            break;
        }
    }
    if (rc < 0) {
        goto done;
    }
    /* InstrumentationScope: name, version (last wins), attributes (checked, not stored). */
    Str scope_name = EMPTY_STR, scope_version = EMPTY_STR;
    if (scope.n && depth + 1 > MAX_DEPTH) {
        depth_error(ctx, scope.first.ptr);
        goto done;
    }
    for (Py_ssize_t k = 0; k < scope.n; k++) {
        Reader sr = reader_of(segs_get(&scope, k));
        while ((rc = next_field(ctx, &sr, &f, depth + 1)) > 0) {
            if (f.wire_type != WT_LEN) {
                continue;
            }
            if (f.number == 1) {
                rc = read_str(ctx, &f, &scope_name);
            }
            else if (f.number == 2) {
                rc = read_str(ctx, &f, &scope_version);
            }
            if (rc < 0) {
                goto done;
            }
        }
        if (rc < 0) {
            goto done;
        }
    }
    if (check_map(ctx, &scope, 3, depth + 2) < 0) {
        goto done;
    }
    Text name_text, version_text;
    text_clean(&scope_name, ctx->limit, &ctx->stats, &name_text);
    text_clean(&scope_version, ctx->limit, &ctx->stats, &version_text);
    if (PyList_GET_SIZE(spans) == 0) {
        /* No row comes of it: it was checked and its statistics counted, nothing more is kept (a
         * request of millions of empty scopes must not cost a tuple each). */
        result = Py_NewRef(Py_None);
        goto done;
    }
    if ((name = text_str_or_none(ctx, &name_text)) == NULL || (version = text_str_or_none(ctx, &version_text)) == NULL) {
        goto done;
    }
    result = PyTuple_Pack(3, name, version, spans);
done:
    segs_free(&scope);
    Py_XDECREF(spans);
    Py_XDECREF(name);
    Py_XDECREF(version);
    return result;
}

/* An EntityRef of a Resource (at `depth`): nothing of it is stored, but its strings are checked. */
static int
check_entity_ref(Ctx *ctx, const Field *ref, int depth)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, ref->data);
    }
    Reader r = {ref->data, ref->data + ref->len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        /* schema_url, type, id_keys (repeated), description_keys (repeated): all strings. */
        if (f.number >= 1 && f.number <= 4 && f.wire_type == WT_LEN && check_str(ctx, &f) < 0) {
            return -1;
        }
    }
    return rc;
}

/*
 * A small request's resource costs as much to decode as its span: an SDK sends the same Resource (service,
 * SDK, host: about ten attributes) with every export. What one Resource's bytes decoded to is kept:
 * (max_attribute_bytes, resource JSON, wanted attributes, the three Stats counts, output bytes charged).
 * The same bytes under the same limit decode to the same objects, statistics and charge, so a request
 * whose Resource is cached gets them without decoding it again (the wanted dict copied: each request owns
 * its own). Bounded: Resources of at most RESOURCE_CACHE_MAX_BYTES, RESOURCE_CACHE_ENTRIES of them (the
 * cache is emptied when full).
 */
#define RESOURCE_CACHE_MAX_BYTES 4096
#define RESOURCE_CACHE_ENTRIES 256
enum { RC_LIMIT, RC_JSON, RC_WANTED, RC_TRUNCATED, RC_NUL, RC_NON_FINITE, RC_OUT_BYTES, RC_ITEMS };

/* The cached decoding of `key` under ctx's limit: a new reference, NULL when there is none (or on error,
 * with an exception set). */
static PyObject *
resource_cached(Ctx *ctx, PyObject *key)
{
    PyObject *entry = PyDict_GetItemWithError(ctx->cfg->resource_cache, key); /* borrowed */
    if (entry == NULL) {
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, RC_LIMIT));
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return limit == ctx->limit ? Py_NewRef(entry) : NULL;
}

/* Applies a cached entry to ctx (statistics, output charge); the wanted dict's copy (new reference), NULL
 * on error (over the output budget: over_budget set, as a decode would). */
static PyObject *
resource_apply(Ctx *ctx, PyObject *entry)
{
    ctx->stats.truncated_values += PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, RC_TRUNCATED));
    ctx->stats.nul_replaced += PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, RC_NUL));
    ctx->stats.non_finite_numbers += PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, RC_NON_FINITE));
    if (charge_output(ctx, PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, RC_OUT_BYTES))) < 0) {
        return NULL;
    }
    return PyDict_Copy(PyTuple_GET_ITEM(entry, RC_WANTED));
}

/* Keeps what `key` decoded to: the differences of ctx's statistics and output since `stats` / `out_bytes`. */
static int
resource_store(Ctx *ctx, PyObject *key, PyObject *json, PyObject *wanted, Stats stats, Py_ssize_t out_bytes)
{
    PyObject *cache = ctx->cfg->resource_cache;
    PyObject *copy = PyDict_Copy(wanted); /* the request's own dict may be changed by its caller */
    if (copy == NULL) {
        return -1;
    }
    PyObject *entry = Py_BuildValue("(nONnnnn)", ctx->limit, json, copy,
                                    ctx->stats.truncated_values - stats.truncated_values,
                                    ctx->stats.nul_replaced - stats.nul_replaced,
                                    ctx->stats.non_finite_numbers - stats.non_finite_numbers, ctx->out_bytes - out_bytes);
    if (entry == NULL) {
        return -1;
    }
    if (PyDict_GET_SIZE(cache) >= RESOURCE_CACHE_ENTRIES) {
        PyDict_Clear(cache);
    }
    int rc = PyDict_SetItem(cache, key, entry);
    Py_DECREF(entry);
    return rc;
}

/* One ResourceSpans at `depth` -> (resource attributes JSON, wanted resource attributes, scopes). */
static PyObject *
convert_resource_spans(Ctx *ctx, Seg seg, int depth)
{
    Segs resource = {0};
    PyObject *scopes = NULL, *wanted = NULL, *json = NULL, *result = NULL, *cache_key = NULL;
    if (depth > MAX_DEPTH) {
        depth_error(ctx, seg.ptr);
        return NULL;
    }
    maybe_yield(ctx);
    if ((scopes = PyList_New(0)) == NULL) {
        goto done;
    }
    Reader r = reader_of(seg);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.wire_type != WT_LEN) {
            continue;
        }
        if (f.number == 1) {
            rc = segs_push(&resource, f.data, f.len);
        }
        else if (f.number == 2) {
            Seg scope_spans = {f.data, f.len};
            PyObject *scope = convert_scope_spans(ctx, scope_spans, depth + 1);
            rc = scope == NULL ? -1 : scope == Py_None ? 0 : PyList_Append(scopes, scope);
            Py_XDECREF(scope);
        }
        else if (f.number == 3) {
            rc = check_str(ctx, &f); /* schema_url */
        }
        if (rc < 0) {
            goto done;
        }
    }
    if (rc < 0) {
        goto done;
    }
    /* Resource (depth + 1): attributes (field 1) are stored; entity_refs (field 3) only checked. */
    if (resource.n && depth + 1 > MAX_DEPTH) {
        depth_error(ctx, resource.first.ptr);
        goto done;
    }
    int keep = PyList_GET_SIZE(scopes) > 0; /* without spans, only checks and statistics count */
    if (keep && resource.n == 1 && resource.first.len <= RESOURCE_CACHE_MAX_BYTES) {
        cache_key = PyBytes_FromStringAndSize((const char *)resource.first.ptr, resource.first.len);
        if (cache_key == NULL) {
            goto done;
        }
        PyObject *entry = resource_cached(ctx, cache_key);
        if (entry != NULL) {
            wanted = resource_apply(ctx, entry);
            if (wanted != NULL) {
                result = PyTuple_Pack(3, PyTuple_GET_ITEM(entry, RC_JSON), wanted, scopes);
            }
            Py_DECREF(entry);
            goto done;
        }
        if (PyErr_Occurred()) {
            goto done;
        }
    }
    Stats stats_before = ctx->stats;
    Py_ssize_t out_before = ctx->out_bytes;
    json_begin(ctx);
    if (keep && (wanted = PyDict_New()) == NULL) {
        goto done;
    }
    if (encode_map(ctx, &resource, 1, depth + 2, &ctx->stats, wanted) < 0 || (keep && (json = json_str(ctx)) == NULL)) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < resource.n; k++) {
        Reader rr = reader_of(segs_get(&resource, k));
        while ((rc = next_field(ctx, &rr, &f, depth + 1)) > 0) {
            if (f.number == 3 && f.wire_type == WT_LEN && check_entity_ref(ctx, &f, depth + 2) < 0) {
                goto done;
            }
        }
        if (rc < 0) {
            goto done;
        }
    }
    if (cache_key != NULL) {
        if (resource_store(ctx, cache_key, json, wanted, stats_before, out_before) < 0) {
            goto done;
        }
    }
    result = keep ? PyTuple_Pack(3, json, wanted, scopes) : Py_NewRef(Py_None);
done:
    segs_free(&resource);
    Py_XDECREF(cache_key);
    Py_XDECREF(scopes);
    Py_XDECREF(wanted);
    Py_XDECREF(json);
    return result;
}

/* The request (depth 0): its resource_spans, in order. */
static int
convert_request(Ctx *ctx, const uint8_t *data, Py_ssize_t len, PyObject *resources)
{
    Reader r = {data, data + len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, 0)) > 0) {
        if (f.number != 1 || f.wire_type != WT_LEN) {
            continue;
        }
        Seg seg = {f.data, f.len};
        PyObject *resource = convert_resource_spans(ctx, seg, 1);
        if (resource == NULL) {
            return -1;
        }
        rc = resource == Py_None ? 0 : PyList_Append(resources, resource);
        Py_DECREF(resource);
        if (rc < 0) {
            return -1;
        }
    }
    return rc;
}

/* ======================================================================================== */
/* 6. The TraceDecoder type and the module                                                   */
/* ======================================================================================== */

PyDoc_STRVAR(decode_doc,
             "decode(body, limit, max_errors, max_output, earliest, latest, window_problem)\n"
             "    -> (resources, rejected, rejections, truncated_values, nul_replaced, non_finite_numbers,\n"
             "        output_bytes, too_old, too_new)\n\n"
             "body: bytes (immutable: the GIL is released now and then during the decode).\n"
             "earliest, latest: accepted span start times (Unix ns, inclusive); a span outside is rejected\n"
             "with the problem window_problem(start_time_unix_nano) returns, and counted in too_old/too_new.\n"
             "resources: [(resource_json, resource_wanted_attributes, [(scope_name, scope_version, spans)])]\n"
             "  (resources and scopes without spans are left out: they were checked, nothing comes of them)\n"
             "spans: [(wanted_attributes, ts, end_ts, trace_id, span_id, parent_span_id, name, kind,\n"
             "         duration_ms, status_code, status_message, trace_state, attributes_json,\n"
             "         events_json, links_json)]\n"
             "rejections: the first max_errors refused spans as (index, name, trace_id, problem).\n"
             "output_bytes: memory of the text made (str data, parsed-back values, scratch buffers).\n"
             "Raises the decoder's error type for bytes upb would refuse, and its budget error type as\n"
             "soon as output_bytes would exceed max_output.");

/* Raises what made a decode or scan fail: a wire-format error (recorded, not raised where found), the
 * output budget, or the Python error already set. */
static void
raise_failure(const Ctx *ctx, PyObject *error_type, PyObject *budget_error)
{
    if (PyErr_Occurred()) {
        return;
    }
    if (ctx->err_what != NULL) {
        PyErr_Format(error_type, "%s at byte %zd", ctx->err_what, (Py_ssize_t)(ctx->err_at - ctx->base));
    }
    else if (ctx->over_budget && budget_error != NULL) {
        PyErr_Format(budget_error, "decoded text would take more than %zd bytes", ctx->max_output);
    }
    else {
        PyErr_SetString(PyExc_SystemError, "_fastotlp failed without an error");
    }
}

static PyObject *
TraceDecoder_decode(TraceDecoder *self, PyObject *args)
{
    PyObject *body;
    Py_ssize_t limit, max_errors, max_output;
    unsigned long long earliest, latest;
    PyObject *window_problem;
    if (!PyArg_ParseTuple(args, "SnnnKKO:decode", &body, &limit, &max_errors, &max_output, &earliest, &latest,
                          &window_problem)) {
        return NULL;
    }
    if (limit < 0 || max_errors < 0 || max_output < 0) {
        PyErr_SetString(PyExc_ValueError, "limit, max_errors and max_output must not be negative");
        return NULL;
    }
    if (!PyCallable_Check(window_problem)) {
        PyErr_SetString(PyExc_TypeError, "window_problem must be callable");
        return NULL;
    }
    Ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.cfg = self;
    ctx.base = (const uint8_t *)PyBytes_AS_STRING(body);
    ctx.limit = limit;
    ctx.max_errors = max_errors;
    ctx.max_output = max_output;
    ctx.window_earliest = earliest;
    ctx.window_latest = latest;
    ctx.window_problem = window_problem;
    PyObject *resources = PyList_New(0);
    ctx.rejections = PyList_New(0);
    PyObject *result = NULL;
    if (resources && ctx.rejections) {
        if (convert_request(&ctx, ctx.base, PyBytes_GET_SIZE(body), resources) == 0) {
            result = Py_BuildValue("(OnOnnnnnn)", resources, ctx.rejected, ctx.rejections, ctx.stats.truncated_values,
                                   ctx.stats.nul_replaced, ctx.stats.non_finite_numbers, ctx.out_bytes, ctx.too_old,
                                   ctx.too_new);
        }
        else {
            raise_failure(&ctx, self->error_type, self->budget_error);
        }
    }
    Py_XDECREF(resources);
    Py_XDECREF(ctx.rejections);
    kv_pop_to(&ctx, 0);
    PyMem_Free(ctx.kv);
    PyMem_Free(ctx.json.data);
    PyMem_Free(ctx.text.data);
    return result;
}

static int
compare_wanted(const void *a, const void *b)
{
    const WantedKey *x = a, *y = b;
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return memcmp(x->utf8, y->utf8, (size_t)x->len);
}

/* What both decoder types are configured with: the attribute keys Python reads (looked up by length,
 * then bytes), the id type, the JSON parser for array/kvlist values of those keys, the error types. */
static int
decoder_init_common(TraceDecoder *self, PyObject *keys, PyObject *uuid_type, PyObject *loads, PyObject *error,
                    PyObject *budget_error)
{
    if (self->wanted != NULL) {
        PyErr_SetString(PyExc_TypeError, "the decoder is already initialised");
        return -1;
    }
    if (!PyExceptionClass_Check(error) || !PyExceptionClass_Check(budget_error) || !PyCallable_Check(uuid_type) ||
        !PyCallable_Check(loads)) {
        PyErr_SetString(PyExc_TypeError, "error and budget_error must be exception classes; uuid_type and loads callables");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    WantedKey *wanted = PyMem_Calloc((size_t)(n ? n : 1), sizeof(WantedKey));
    if (wanted == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if (!PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "keys must be str");
            PyMem_Free(wanted);
            return -1;
        }
        Py_ssize_t len;
        const char *utf8 = PyUnicode_AsUTF8AndSize(key, &len);
        if (utf8 == NULL) {
            PyMem_Free(wanted);
            return -1;
        }
        /* Only NUL-free keys can match: a key with NUL is matched after its NUL became U+FFFD. */
        if (len == 0 || len > MAX_WANTED_KEY_LEN || memchr(utf8, 0, (size_t)len) || strstr(utf8, "\xef\xbf\xbd")) {
            PyErr_Format(PyExc_ValueError, "key %R cannot be looked up natively", key);
            PyMem_Free(wanted);
            return -1;
        }
        wanted[i].str = key;
        wanted[i].utf8 = utf8;
        wanted[i].len = len;
    }
    qsort(wanted, (size_t)n, sizeof(WantedKey), compare_wanted);
    for (Py_ssize_t i = 0; i <= MAX_WANTED_KEY_LEN; i++) {
        self->by_len_start[i] = 0;
        self->by_len_count[i] = 0;
    }
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        self->by_len_start[wanted[i].len] = i;
        self->by_len_count[wanted[i].len]++;
    }
    self->nan_label = PyUnicode_InternFromString("NaN");
    self->inf_label = PyUnicode_InternFromString("Infinity");
    self->ninf_label = PyUnicode_InternFromString("-Infinity");
    if (!self->nan_label || !self->inf_label || !self->ninf_label) {
        PyMem_Free(wanted);
        return -1;
    }
    self->wanted = wanted;
    self->n_wanted = n;
    self->keys = Py_NewRef(keys); /* keeps the key strs (and their UTF-8) alive */
    self->uuid_type = Py_NewRef(uuid_type);
    PyObject *module = PyType_GetModule(Py_TYPE(self));
    PyObject *own_uuid = module ? PyObject_GetAttrString(module, "Uuid") : NULL;
    if (own_uuid == NULL) {
        PyErr_Clear();
    }
    self->uuid_native = own_uuid != NULL && own_uuid == uuid_type;
    Py_XDECREF(own_uuid);
    self->loads = Py_NewRef(loads);
    self->error_type = Py_NewRef(error);
    self->budget_error = Py_NewRef(budget_error);
    if ((self->resource_cache = PyDict_New()) == NULL) {
        return -1;
    }
    return 0;
}

static int
TraceDecoder_init(TraceDecoder *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"keys", "uuid_type", "span_kinds", "status_codes", "loads", "error", "budget_error", NULL};
    PyObject *keys, *uuid_type, *span_kinds, *status_codes, *loads, *error, *budget_error;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!O!OOO:TraceDecoder", names, &PyTuple_Type, &keys, &uuid_type,
                                     &PyTuple_Type, &span_kinds, &PyTuple_Type, &status_codes, &loads, &error,
                                     &budget_error)) {
        return -1;
    }
    if (PyTuple_GET_SIZE(span_kinds) == 0 || PyTuple_GET_SIZE(status_codes) == 0) {
        PyErr_SetString(PyExc_ValueError, "span_kinds and status_codes must not be empty");
        return -1;
    }
    if (decoder_init_common(self, keys, uuid_type, loads, error, budget_error) < 0) {
        return -1;
    }
    self->span_kinds = Py_NewRef(span_kinds);
    self->status_codes = Py_NewRef(status_codes);
    return 0;
}

static PyObject *
TraceDecoder_call_decode(TraceDecoder *self, PyObject *args)
{
    if (self->wanted == NULL) {
        PyErr_SetString(PyExc_TypeError, "TraceDecoder was not initialised");
        return NULL;
    }
    return TraceDecoder_decode(self, args);
}

static int
TraceDecoder_traverse(TraceDecoder *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->keys);
    Py_VISIT(self->uuid_type);
    Py_VISIT(self->span_kinds);
    Py_VISIT(self->status_codes);
    Py_VISIT(self->loads);
    Py_VISIT(self->error_type);
    Py_VISIT(self->budget_error);
    Py_VISIT(self->resource_cache);
    return signal_config_traverse(self, visit, arg);
}

static int
TraceDecoder_clear(TraceDecoder *self)
{
    signal_config_free(self);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->uuid_type);
    Py_CLEAR(self->span_kinds);
    Py_CLEAR(self->status_codes);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->error_type);
    Py_CLEAR(self->budget_error);
    Py_CLEAR(self->resource_cache);
    Py_CLEAR(self->nan_label);
    Py_CLEAR(self->inf_label);
    Py_CLEAR(self->ninf_label);
    PyMem_Free(self->wanted);
    self->wanted = NULL;
    self->n_wanted = 0;
    return 0;
}

static void
TraceDecoder_dealloc(TraceDecoder *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    TraceDecoder_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef TraceDecoder_methods[] = {
    {"decode", (PyCFunction)TraceDecoder_call_decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(TraceDecoder_doc,
             "TraceDecoder(keys, uuid_type, span_kinds, status_codes, loads, error, budget_error)\n\n"
             "Decodes ExportTraceServiceRequest bytes into row pieces (see decode). keys: the attribute\n"
             "keys whose values Python needs; uuid_type: called with the 16 trace id bytes; span_kinds /\n"
             "status_codes: labels by enum value, item 0 for unknown values; loads: parses the JSON of\n"
             "an array/kvlist value of a wanted key; error: the exception raised for invalid bytes;\n"
             "budget_error: the exception raised when the output would exceed decode()'s max_output.");

static PyType_Slot TraceDecoder_slots[] = {
    {Py_tp_doc, (void *)TraceDecoder_doc},
    {Py_tp_init, TraceDecoder_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, TraceDecoder_dealloc},
    {Py_tp_traverse, TraceDecoder_traverse},
    {Py_tp_clear, TraceDecoder_clear},
    {Py_tp_methods, TraceDecoder_methods},
    {0, NULL},
};

static PyType_Spec TraceDecoder_spec = {
    .name = "receiver.convert._fastotlp.TraceDecoder",
    .basicsize = sizeof(TraceDecoder),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = TraceDecoder_slots,
};

/* The logs and metrics decoders (SignalDecoder): the same reader, text rules and value encoders. */
#include "_fastotlp_signals.c"

/* The GenAI rules of genai.py, executed on the decoder's attribute dicts (LlmRules). */
#include "_genai_rules.c"

/* ======================================================================================== */
/* 7. The scanners: what a request holds, counted before it is decoded                      */
/* ======================================================================================== */

/*
 * Why: what a request costs once decoded depends on how many messages it holds, not on its size (the
 * two bytes `0a 00` are one empty ResourceSpans, which upb and the converters turn into tens to
 * hundreds of bytes). WireScanner walks a request's wire format with the schema of its type and
 * counts, per message type, the messages upb would make, and the elements of repeated scalar fields;
 * it allocates nothing and runs without the GIL. Python checks the counts against the request's
 * limits before any decoder runs (receiver/convert/budget.py).
 *
 * It reads with the decoder's reader, so it refuses what upb refuses about structure (broken wire
 * format, over-long sizes, bad groups, nesting deeper than 100) and never more: it does not look
 * inside strings (UTF-8 is the decoders' business) and does not descend into a message type that holds
 * nothing it counts (nothing inside such a message can make anything else exist). A request it
 * accepts may still be refused by a decoder; one it refuses, upb refuses too.
 */

enum { SK_NONE = 0, SK_MESSAGE = 1, SK_VARINTS = 2, SK_FIXED64S = 3, SK_FIXED32S = 4, SK_STRINGS = 5 };

typedef struct {
    uint8_t kind;
    int32_t child; /* SK_MESSAGE: the type index of the field's message */
} ScanSlot;

typedef struct {
    ScanSlot *slots; /* by field number, 0 .. width - 1 */
    uint32_t width;
    int descend;     /* holds a message field or a counted scalar field */
} ScanType;

typedef struct {
    PyObject_HEAD
    ScanType *types; /* type 0 is the request */
    Py_ssize_t n_types;
    PyObject *error_type;
} WireScanner;

typedef struct {
    Ctx ctx; /* the reader's: request base, recorded error */
    const ScanType *types;
    Py_ssize_t *counts;
    Py_ssize_t scalars;
    Py_ssize_t messages;
    Py_ssize_t max_messages;
    int stopped; /* max_messages was passed: the counts are a lower bound */
} Scan;

/* Elements of a packed repeated varint field: one per byte without its continuation bit. */
static Py_ssize_t
packed_varints(const uint8_t *p, Py_ssize_t n)
{
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        count += p[i] < 0x80;
    }
    return count;
}

/* Whether a message's bytes are exactly one well-formed field that its type does not count: an
 * AnyValue holding a string or a number, nearly always. Nothing inside can be counted or be refused
 * for its structure, so the scan need not descend (a quarter of the scan's work on GenAI spans). */
static int
single_uncounted_field(const ScanType *t, const uint8_t *p, Py_ssize_t len)
{
    if (len < 2 || p[0] >= 0x80 || p[0] < 8) {
        return 0; /* not a one-byte tag of a field number >= 1 */
    }
    uint32_t number = p[0] >> 3;
    if (number < t->width && t->slots[number].kind != SK_NONE) {
        return 0;
    }
    switch (p[0] & 7) {
    case WT_LEN:
        if (p[1] < 0x80) {
            return 2 + (Py_ssize_t)p[1] == len;
        }
        return len > 2 && p[2] < 0x80 && 3 + (Py_ssize_t)((p[1] & 0x7f) | (uint32_t)p[2] << 7) == len;
    case WT_VARINT:
        for (Py_ssize_t i = 1; i < len && i <= 10; i++) {
            if (!(p[i] & 0x80)) {
                return i + 1 == len;
            }
        }
        return 0;
    case WT_I64:
        return len == 9;
    case WT_I32:
        return len == 5;
    default:
        return 0;
    }
}

static int
scan_message(Scan *sc, Reader r, int32_t type, int depth)
{
    const ScanType *t = &sc->types[type];
    Field f;
    int rc;
    while ((rc = next_field(&sc->ctx, &r, &f, depth)) > 0) {
        if (f.number >= t->width) {
            continue;
        }
        ScanSlot slot = t->slots[f.number];
        switch (slot.kind) {
        case SK_MESSAGE:
            if (f.wire_type != WT_LEN) {
                break; /* upb keeps it among the unknown fields */
            }
            if (depth + 1 > MAX_DEPTH) {
                return depth_error(&sc->ctx, f.data);
            }
            sc->counts[slot.child]++;
            if (++sc->messages > sc->max_messages) {
                sc->stopped = 1;
                return 0;
            }
            if (sc->types[slot.child].descend && !single_uncounted_field(&sc->types[slot.child], f.data, f.len)) {
                Reader inner = {f.data, f.data + f.len};
                if (scan_message(sc, inner, slot.child, depth + 1) < 0) {
                    return -1;
                }
                if (sc->stopped) {
                    return 0;
                }
            }
            break;
        case SK_VARINTS:
            if (f.wire_type == WT_VARINT) {
                sc->scalars++;
            }
            else if (f.wire_type == WT_LEN) {
                sc->scalars += packed_varints(f.data, f.len);
            }
            break;
        case SK_FIXED64S:
            sc->scalars += f.wire_type == WT_I64 ? 1 : f.wire_type == WT_LEN ? (f.len + 7) / 8 : 0;
            break;
        case SK_FIXED32S:
            sc->scalars += f.wire_type == WT_I32 ? 1 : f.wire_type == WT_LEN ? (f.len + 3) / 4 : 0;
            break;
        case SK_STRINGS:
            sc->scalars += f.wire_type == WT_LEN;
            break;
        default:
            break;
        }
    }
    return rc;
}

static int scanner_run(WireScanner *self, PyObject *body, Py_ssize_t max_messages, Scan *sc);

PyDoc_STRVAR(scan_doc,
             "scan(body, max_messages) -> (counts, scalars, stopped)\n\n"
             "counts: messages per type index (the request itself not counted); scalars: elements of\n"
             "repeated scalar fields; stopped: True when more than max_messages messages were found (the\n"
             "scan stopped there). Raises the scanner's error type for bytes upb would refuse.");

static PyObject *
WireScanner_scan(WireScanner *self, PyObject *args)
{
    PyObject *body;
    Py_ssize_t max_messages;
    if (!PyArg_ParseTuple(args, "Sn:scan", &body, &max_messages)) {
        return NULL;
    }
    Scan sc;
    if (scanner_run(self, body, max_messages, &sc) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *counts = PyTuple_New(self->n_types);
    for (Py_ssize_t i = 0; counts != NULL && i < self->n_types; i++) {
        PyObject *n = PyLong_FromSsize_t(sc.counts[i]);
        if (n == NULL) {
            Py_CLEAR(counts);
            break;
        }
        PyTuple_SET_ITEM(counts, i, n);
    }
    if (counts != NULL) {
        result = Py_BuildValue("(NnO)", counts, sc.scalars, sc.stopped ? Py_True : Py_False);
    }
    PyMem_Free(sc.counts);
    return result;
}

/* Scans `body` into sc (counts calloc'd); 0, or -1 with the scanner's error raised. Releases the GIL
 * only for bodies large enough to be worth it: for a small request the release and re-acquire cost
 * more than the scan. */
#define SCAN_NOGIL_BYTES (64 * 1024)
static int
scanner_run(WireScanner *self, PyObject *body, Py_ssize_t max_messages, Scan *sc)
{
    if (self->types == NULL) {
        PyErr_SetString(PyExc_TypeError, "WireScanner was not initialised");
        return -1;
    }
    memset(sc, 0, sizeof *sc);
    sc->ctx.base = (const uint8_t *)PyBytes_AS_STRING(body);
    sc->types = self->types;
    sc->max_messages = max_messages;
    sc->counts = PyMem_Calloc((size_t)self->n_types, sizeof(Py_ssize_t));
    if (sc->counts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Reader r = {sc->ctx.base, sc->ctx.base + PyBytes_GET_SIZE(body)};
    int rc;
    if (PyBytes_GET_SIZE(body) >= SCAN_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        rc = scan_message(sc, r, 0, 0);
        Py_END_ALLOW_THREADS
    }
    else {
        rc = scan_message(sc, r, 0, 0);
    }
    if (rc < 0) {
        raise_failure(&sc->ctx, self->error_type, NULL);
        PyMem_Free(sc->counts);
        sc->counts = NULL;
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(weigh_doc,
             "weigh(body, max_messages, weights) -> (items, containers, message_bytes, scalars, stopped)\n\n"
             "scan() with its counts summed by weights[i] = (bytes, kind) of type index i (kind 1: an item,\n"
             "2: a container, else neither): items and containers are the messages of those kinds,\n"
             "message_bytes the sum of count x bytes. What RequestScanner.charge computes from scan()'s\n"
             "counts, without a Python object per type.");

static PyObject *
WireScanner_weigh(WireScanner *self, PyObject *args)
{
    PyObject *body, *weights;
    Py_ssize_t max_messages;
    if (!PyArg_ParseTuple(args, "SnO!:weigh", &body, &max_messages, &PyTuple_Type, &weights)) {
        return NULL;
    }
    if (self->types != NULL && PyTuple_GET_SIZE(weights) != self->n_types) {
        PyErr_Format(PyExc_ValueError, "weigh: %zd weights for %zd types", PyTuple_GET_SIZE(weights),
                     self->n_types);
        return NULL;
    }
    Scan sc;
    if (scanner_run(self, body, max_messages, &sc) < 0) {
        return NULL;
    }
    long long items = 0, containers = 0, nbytes = 0;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < self->n_types; i++) {
        Py_ssize_t n = sc.counts[i];
        if (n == 0) {
            continue;
        }
        PyObject *weight = PyTuple_GET_ITEM(weights, i);
        long long cost;
        long kind;
        if (!PyTuple_Check(weight) || PyTuple_GET_SIZE(weight) != 2 ||
            ((cost = PyLong_AsLongLong(PyTuple_GET_ITEM(weight, 0))) == -1 && PyErr_Occurred()) ||
            ((kind = PyLong_AsLong(PyTuple_GET_ITEM(weight, 1))) == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "weigh: each weight is a (bytes, kind) pair of ints");
            }
            goto done;
        }
        /* n <= max_messages + 1 and costs are bytes per message: no overflow for any real bound */
        nbytes += (long long)n * cost;
        items += kind == 1 ? n : 0;
        containers += kind == 2 ? n : 0;
    }
    result = Py_BuildValue("(LLLnO)", items, containers, nbytes, sc.scalars, sc.stopped ? Py_True : Py_False);
done:
    PyMem_Free(sc.counts);
    return result;
}

static void
scanner_free_types(WireScanner *self)
{
    for (Py_ssize_t i = 0; self->types != NULL && i < self->n_types; i++) {
        PyMem_Free(self->types[i].slots);
    }
    PyMem_Free(self->types);
    self->types = NULL;
    self->n_types = 0;
}

/* WireScanner(types, error): types[i] = ((field number, kind, child type index), ...) for message
 * type i; type 0 is the request. Kinds: the SK_* values (exported as module constants). */
static int
WireScanner_init(WireScanner *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"types", "error", NULL};
    PyObject *types, *error;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O:WireScanner", names, &PyTuple_Type, &types, &error)) {
        return -1;
    }
    if (self->types != NULL) {
        PyErr_SetString(PyExc_TypeError, "WireScanner is already initialised");
        return -1;
    }
    if (!PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "error must be an exception class");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "types must not be empty");
        return -1;
    }
    self->types = PyMem_Calloc((size_t)n, sizeof(ScanType));
    if (self->types == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->n_types = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fields = PyTuple_GET_ITEM(types, i);
        if (!PyTuple_Check(fields)) {
            PyErr_SetString(PyExc_TypeError, "each type must be a tuple of (number, kind, child)");
            goto fail;
        }
        uint32_t width = 0;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(fields); k++) {
            unsigned long number, kind;
            long child;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, k), "kkl", &number, &kind, &child)) {
                goto fail;
            }
            if (number == 0 || number > 4096 || kind > SK_STRINGS || child < -1 || child >= n ||
                (kind == SK_MESSAGE) != (child >= 0)) {
                PyErr_Format(PyExc_ValueError, "invalid field (%lu, %lu, %ld) of type %zd", number, kind, child, i);
                goto fail;
            }
            width = number + 1 > width ? (uint32_t)number + 1 : width;
        }
        ScanType *t = &self->types[i];
        t->width = width;
        t->slots = PyMem_Calloc(width ? width : 1, sizeof(ScanSlot));
        if (t->slots == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(fields); k++) {
            unsigned long number, kind;
            long child;
            PyArg_ParseTuple(PyTuple_GET_ITEM(fields, k), "kkl", &number, &kind, &child);
            t->slots[number].kind = (uint8_t)kind;
            t->slots[number].child = (int32_t)child;
            t->descend |= kind != SK_NONE;
        }
    }
    self->error_type = Py_NewRef(error);
    return 0;
fail:
    scanner_free_types(self);
    return -1;
}

static int
WireScanner_traverse(WireScanner *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->error_type);
    return 0;
}

static int
WireScanner_clear(WireScanner *self)
{
    Py_CLEAR(self->error_type);
    return 0;
}

static void
WireScanner_dealloc(WireScanner *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    WireScanner_clear(self);
    scanner_free_types(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef WireScanner_methods[] = {
    {"scan", (PyCFunction)WireScanner_scan, METH_VARARGS, scan_doc},
    {"weigh", (PyCFunction)WireScanner_weigh, METH_VARARGS, weigh_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(WireScanner_doc,
             "WireScanner(types, error)\n\n"
             "Counts the messages of a protobuf request by type before it is decoded (see scan).\n"
             "types[i]: ((field number, kind, child type index or -1), ...) of message type i; type 0 is\n"
             "the request. error: the exception raised for bytes upb would refuse.");

static PyType_Slot WireScanner_slots[] = {
    {Py_tp_doc, (void *)WireScanner_doc},
    {Py_tp_init, WireScanner_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, WireScanner_dealloc},
    {Py_tp_traverse, WireScanner_traverse},
    {Py_tp_clear, WireScanner_clear},
    {Py_tp_methods, WireScanner_methods},
    {0, NULL},
};

static PyType_Spec WireScanner_spec = {
    .name = "receiver.convert._fastotlp.WireScanner",
    .basicsize = sizeof(WireScanner),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = WireScanner_slots,
};

PyDoc_STRVAR(scan_json_doc,
             "scan_json(body) -> (objects, arrays, max_depth)\n\n"
             "Counts the objects and arrays of a JSON text, and its deepest nesting, without parsing it\n"
             "(strings are skipped, nothing is validated) and without the GIL.");

static PyObject *
scan_json(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *body;
    if (!PyArg_ParseTuple(args, "S:scan_json", &body)) {
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(body);
    const uint8_t *end = p + PyBytes_GET_SIZE(body);
    Py_ssize_t objects = 0, arrays = 0, depth = 0, max_depth = 0;
    Py_BEGIN_ALLOW_THREADS
    while (p < end) {
        uint8_t c = *p++;
        switch (c) {
        case '"':
            while (p < end) {
                uint8_t s = *p++;
                if (s == '\\') {
                    p += p < end; /* whatever is escaped, it does not end the string */
                }
                else if (s == '"') {
                    break;
                }
            }
            break;
        case '{':
        case '[':
            objects += c == '{';
            arrays += c == '[';
            if (++depth > max_depth) {
                max_depth = depth;
            }
            break;
        case '}':
        case ']':
            depth -= depth > 0;
            break;
        default:
            break;
        }
    }
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(nnn)", objects, arrays, max_depth);
}

/* ======================================================================================== */
/* 8. Uuid: a 16-byte id the garbage collector does not track                                */
/* ======================================================================================== */

/*
 * receiver.convert.pgvalues.Uuid when the module is built: a bytes subclass with a `bytes` attribute
 * (what asyncpg's uuid encoder reads). Instances of a type defined in Python are always tracked by the
 * garbage collector, and so is every tuple holding one: each row stayed tracked for as long as it was
 * queued, and every full collection walked them all again, holding the GIL (and the event loop) for
 * hundreds of ms once large requests had filled the queue. This type is not tracked, so a row holding
 * only atoms (str, numbers, datetime, Decimal, Uuid, None) is untracked at its first collection.
 */

/* A Uuid of 16 bytes: built in place when the decoder's uuid_type is this module's Uuid (no bytes object,
 * no type call: that call, once per span, was ~3 % of the receiver's CPU at full load), else by calling
 * uuid_type. */
static PyObject *
new_uuid(TraceDecoder *cfg, const uint8_t *raw)
{
#if PY_VERSION_HEX < 0x030E0000
    if (cfg->uuid_native) {
        PyTypeObject *type = (PyTypeObject *)cfg->uuid_type;
        PyObject *uuid = type->tp_alloc(type, 16); /* bytes' layout: ob_size 16, room for the NUL */
        if (uuid == NULL) {
            return NULL;
        }
        memcpy(PyBytes_AS_STRING(uuid), raw, 16);
        PyBytes_AS_STRING(uuid)[16] = 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        ((PyBytesObject *)uuid)->ob_shash = -1; /* not computed yet (as bytes' own constructor leaves it) */
#pragma GCC diagnostic pop
        return uuid;
    }
#endif
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)raw, 16);
    if (bytes == NULL) {
        return NULL;
    }
    PyObject *uuid = PyObject_CallOneArg(cfg->uuid_type, bytes);
    Py_DECREF(bytes);
    return uuid;
}


static PyObject *
Uuid_get_bytes(PyObject *self, void *closure)
{
    (void)closure;
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self), PyBytes_GET_SIZE(self));
}

static PyObject *
Uuid_repr(PyObject *self)
{
    const uint8_t *s = (const uint8_t *)PyBytes_AS_STRING(self);
    Py_ssize_t n = PyBytes_GET_SIZE(self);
    char text[64];
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n && i < 16; i++) {
        if (n == 16 && (i == 4 || i == 6 || i == 8 || i == 10)) {
            text[o++] = '-';
        }
        text[o++] = HEX_DIGITS[s[i] >> 4];
        text[o++] = HEX_DIGITS[s[i] & 15];
    }
    text[o] = 0;
    return PyUnicode_FromFormat("Uuid('%s')", text);
}

static void
Uuid_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type); /* instances of a heap type hold a reference to it */
}

static PyGetSetDef Uuid_getset[] = {
    {"bytes", Uuid_get_bytes, NULL, "the 16 bytes, as bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Uuid_slots[] = {
    {Py_tp_doc, (void *)"Uuid(raw: bytes): a 16-byte id for asyncpg's uuid encoder (reads .bytes), untracked by the GC."},
    {Py_tp_repr, Uuid_repr},
    {Py_tp_dealloc, Uuid_dealloc},
    {Py_tp_getset, Uuid_getset},
    {0, NULL},
};

static PyType_Spec Uuid_spec = {
    .name = "receiver.convert._fastotlp.Uuid",
    .basicsize = 0, /* bytes' own layout */
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Uuid_slots,
};

PyDoc_STRVAR(untrack_doc,
             "untrack(rows, start) -> None\n\n"
             "Untracks, in the list rows from index start on, every tuple that holds only values the garbage\n"
             "collector does not track (what its next pass would conclude): rows of a large request then cost\n"
             "no full pass anything, and a full pass holds the GIL.");

static PyObject *
untrack(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *rows;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!n:untrack", &PyList_Type, &rows, &start)) {
        return NULL;
    }
    for (Py_ssize_t i = start < 0 ? 0 : start; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_CheckExact(row) || !PyObject_GC_IsTracked(row)) {
            continue;
        }
        int atoms_only = 1;
        for (Py_ssize_t k = 0; atoms_only && k < PyTuple_GET_SIZE(row); k++) {
            PyObject *item = PyTuple_GET_ITEM(row, k);
            atoms_only = !PyObject_IS_GC(item) || !PyObject_GC_IsTracked(item);
        }
        if (atoms_only) {
            PyObject_GC_UnTrack(row);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef fastotlp_functions[] = {
    {"scan_json", scan_json, METH_VARARGS, scan_json_doc},
    {"untrack", untrack, METH_VARARGS, untrack_doc},
    {NULL, NULL, 0, NULL},
};

static int
fastotlp_exec(PyObject *module)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return -1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &TraceDecoder_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "TraceDecoder", type);
    Py_DECREF(type);
    if (rc < 0 || PyModule_AddIntConstant(module, "MAX_DEPTH", MAX_DEPTH) < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &SignalDecoder_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "SignalDecoder", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &LlmRules_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "LlmRules", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &WireScanner_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "WireScanner", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &Uuid_spec, (PyObject *)&PyBytes_Type);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "Uuid", type);
    Py_DECREF(type);
    if (rc < 0 || PyModule_AddIntConstant(module, "SCAN_MESSAGE", SK_MESSAGE) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_VARINTS", SK_VARINTS) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_FIXED64S", SK_FIXED64S) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_FIXED32S", SK_FIXED32S) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_STRINGS", SK_STRINGS) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot fastotlp_slots[] = {
    {Py_mod_exec, fastotlp_exec},
    {0, NULL},
};

static struct PyModuleDef fastotlp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "receiver.convert._fastotlp",
    .m_doc = "Native decoding and conversion of OTLP trace, log and metric requests (see receiver/convert/traces_bytes.py "
             "and logs_metrics_bytes.py).",
    .m_size = 0,
    .m_methods = fastotlp_functions,
    .m_slots = fastotlp_slots,
};

PyMODINIT_FUNC
PyInit__fastotlp(void)
{
    return PyModuleDef_Init(&fastotlp_module);
}
