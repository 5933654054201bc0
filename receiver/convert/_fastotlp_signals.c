/*
 * _fastotlp_signals.c: ExportLogsServiceRequest / ExportMetricsServiceRequest bytes -> `llm_logs` /
 * `llm_metrics` rows, in C. #included by _fastotlp.c, never compiled on its own: one translation unit,
 * so the logs and metrics decoders share the trace decoder's wire reader, text rules (cleaning, caps,
 * JSON strings and numbers) and value encoders (AnyValue, attribute maps), and its TraceDecoder struct.
 *
 * Why: through the protobuf object model a log record cost ~28 us and a metric point ~26 us of CPU,
 * more than a span on the native trace path (~16 us). Here every row is made in one pass over the bytes:
 * Python is called only for the GenAI provider/model rules (genai.provider_and_model, on the few
 * attributes they read) and to word a rejection.
 *
 * The pure-Python converters (receiver/convert/logs.py, metrics.py) are the reference: every rule here
 * reproduces them, and tests/test_native_signals.py compares both paths row by row, column by column.
 * What is accepted is what upb accepts, as for traces: a request upb refuses (wire format, UTF-8, a
 * packed fixed-size field whose length is not a multiple of its element, nesting) is refused whole.
 *
 * Row identities (receiver/convert/identity.py): a record's or point's id is BLAKE2b over its resource,
 * scope (and metric series) and the item's serialization as upb writes it (SerializeToString, which
 * without maps is deterministic). SDKs send exactly those bytes nearly always, so an item's bytes are
 * checked against the rules of upb's serializer (canon_message) and hashed as they are; an item in any
 * other form (fields out of order, a default value sent, a padded varint, an unknown field, ...) is
 * serialized by upb (the `serialize` callable) and those bytes are hashed. Both paths hash the same
 * bytes, whatever the client sent.
 *
 * Layout:
 *   A. BLAKE2b (RFC 7693): hashlib.blake2b(digest_size=16, person=..., salt=...)
 *   B. The canonical form: are these bytes what upb's serializer writes for the message they hold?
 *   C. The per-call context, rejections, identities, resource and scope headers
 *   D. Logs: LogRecord -> row
 *   E. Metrics: Metric and its data points -> rows
 *   F. The SignalDecoder type
 */

/* ======================================================================================== */
/* A. BLAKE2b                                                                                */
/* ======================================================================================== */

typedef struct {
    uint64_t h[8];
    uint64_t t;       /* bytes compressed so far (the counter's high word stays 0 below 2^64 bytes) */
    uint8_t buf[128]; /* the block not compressed yet: the last one is compressed by b2_final */
    size_t fill;
} Blake2b;

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t
rotr64(uint64_t x, int n)
{
    return (x >> n) | (x << (64 - n));
}

#define B2_G(a, b, c, d, x, y)                                                                                         \
    do {                                                                                                               \
        v[a] = v[a] + v[b] + (x);                                                                                      \
        v[d] = rotr64(v[d] ^ v[a], 32);                                                                                \
        v[c] = v[c] + v[d];                                                                                            \
        v[b] = rotr64(v[b] ^ v[c], 24);                                                                                \
        v[a] = v[a] + v[b] + (y);                                                                                      \
        v[d] = rotr64(v[d] ^ v[a], 16);                                                                                \
        v[c] = v[c] + v[d];                                                                                            \
        v[b] = rotr64(v[b] ^ v[c], 63);                                                                                \
    } while (0)

static void
b2_compress(Blake2b *s, const uint8_t *block, int last)
{
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        m[i] = load_le64(block + 8 * i);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= s->t;
    if (last) {
        v[14] = ~v[14];
    }
    /* Rounds unrolled with constant indices: the compiler resolves B2_SIGMA and keeps m in registers
     * (twice as fast as indexing it at run time). */
#define B2_ROUND(r)                                                                                                    \
    do {                                                                                                               \
        B2_G(0, 4, 8, 12, m[B2_SIGMA[r][0]], m[B2_SIGMA[r][1]]);                                                       \
        B2_G(1, 5, 9, 13, m[B2_SIGMA[r][2]], m[B2_SIGMA[r][3]]);                                                       \
        B2_G(2, 6, 10, 14, m[B2_SIGMA[r][4]], m[B2_SIGMA[r][5]]);                                                      \
        B2_G(3, 7, 11, 15, m[B2_SIGMA[r][6]], m[B2_SIGMA[r][7]]);                                                      \
        B2_G(0, 5, 10, 15, m[B2_SIGMA[r][8]], m[B2_SIGMA[r][9]]);                                                      \
        B2_G(1, 6, 11, 12, m[B2_SIGMA[r][10]], m[B2_SIGMA[r][11]]);                                                    \
        B2_G(2, 7, 8, 13, m[B2_SIGMA[r][12]], m[B2_SIGMA[r][13]]);                                                     \
        B2_G(3, 4, 9, 14, m[B2_SIGMA[r][14]], m[B2_SIGMA[r][15]]);                                                     \
    } while (0)
    B2_ROUND(0);
    B2_ROUND(1);
    B2_ROUND(2);
    B2_ROUND(3);
    B2_ROUND(4);
    B2_ROUND(5);
    B2_ROUND(6);
    B2_ROUND(7);
    B2_ROUND(8);
    B2_ROUND(9);
    B2_ROUND(10);
    B2_ROUND(11);
#undef B2_ROUND
    for (int i = 0; i < 8; i++) {
        s->h[i] ^= v[i] ^ v[i + 8];
    }
}

/* hashlib.blake2b(digest_size=16, person=person, salt=salt): unkeyed, sequential (fanout 1, depth 1). */
static void
b2_init(Blake2b *s, const uint8_t person[16], const uint8_t salt[16])
{
    for (int i = 0; i < 8; i++) {
        s->h[i] = B2_IV[i];
    }
    s->h[0] ^= 0x01010000ULL | 16;
    s->h[4] ^= load_le64(salt);
    s->h[5] ^= load_le64(salt + 8);
    s->h[6] ^= load_le64(person);
    s->h[7] ^= load_le64(person + 8);
    s->t = 0;
    s->fill = 0;
}

static void
b2_update(Blake2b *s, const uint8_t *data, size_t n)
{
    while (n > 0) {
        if (s->fill == 128) {
            s->t += 128;
            b2_compress(s, s->buf, 0);
            s->fill = 0;
        }
        size_t take = 128 - s->fill < n ? 128 - s->fill : n;
        memcpy(s->buf + s->fill, data, take);
        s->fill += take;
        data += take;
        n -= take;
    }
}

/* The 16-byte digest of what `state` has hashed (state itself is left as it was). */
static void
b2_final(const Blake2b *state, uint8_t out[16])
{
    Blake2b s = *state;
    s.t += s.fill;
    memset(s.buf + s.fill, 0, 128 - s.fill);
    b2_compress(&s, s.buf, 1);
    for (int i = 0; i < 16; i++) {
        out[i] = (uint8_t)(s.h[i / 8] >> (8 * (i % 8)));
    }
}

/* identity._frame: the length (8 bytes, little-endian), then the bytes. */
static void
b2_frame(Blake2b *s, const uint8_t *data, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++) {
        len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    b2_update(s, len, 8);
    b2_update(s, data, n);
}

/* ======================================================================================== */
/* B. The canonical form                                                                      */
/* ======================================================================================== */

/*
 * upb's serializer writes a message's known fields in field-number order, then its unknown fields. A
 * scalar without presence is left out when it is zero (bit-wise: -0.0 is written), a string or bytes
 * field when empty; a oneof member or `optional` field is written whenever set; repeated scalars are
 * packed (one occurrence, left out when empty); varints take the fewest bytes; an int32 or enum is
 * sign-extended to 64 bits, a uint32 or sint32 is at most 32 bits, a bool is 0 or 1. canon_message
 * says whether bytes (already accepted by the decoder) are exactly that, for the message they parse to;
 * "no" is always safe (upb then serializes the item), so it is strict: any unknown field, any field
 * sent twice that is not a repeated message or string, any oneof with two members set says no.
 *
 * The schema comes from the protobuf descriptors (logs_metrics_bytes.canon_table), per message type:
 * per field number, its kind, flags, child type and oneof.
 */
enum { CK_NONE = 0, CK_I64 = 1, CK_I32 = 2, CK_VARINT = 3, CK_INT32 = 4, CK_UINT32 = 5, CK_BOOL = 6, CK_LEN = 7,
       CK_MESSAGE = 8 };
enum { CF_REPEATED = 1, CF_PACKED = 2, CF_PRESENCE = 4 };

typedef struct {
    uint8_t kind;
    uint8_t flags;
    int8_t oneof;  /* index of the field's oneof in its message (0..63), or -1 */
    int32_t child; /* CK_MESSAGE: the type index of the field's message */
} CanonSlot;

typedef struct {
    CanonSlot *slots; /* by field number, 0 .. width - 1 */
    uint32_t width;
} CanonType;

/* The message types whose serialization an identity hashes (order: logs_metrics_bytes.ROOTS). */
enum { ROOT_RESOURCE = 0, ROOT_SCOPE, ROOT_LOG_RECORD, ROOT_NUMBER, ROOT_HISTOGRAM, ROOT_EXPONENTIAL, ROOT_SUMMARY,
       N_ROOTS };

struct SignalConfig {
    PyObject *provider_and_model; /* genai.provider_and_model(attrs) -> (provider, model) */
    PyObject *as_text;            /* genai.as_text(value) -> str | None */
    PyObject *serialize;          /* serialize(root, bytes) -> the bytes upb's serializer writes */
    PyObject *temporalities;      /* metrics.TEMPORALITIES: labels by aggregation_temporality (0..2) */
    PyObject *kinds[5];           /* "gauge", "sum", "histogram", "exponential_histogram", "summary" */
    PyObject *service_key;        /* "service.name", "event.name": borrowed from the decoder's keys */
    PyObject *event_key;
    uint8_t logs_person[16];      /* identity.LOGS_DOMAIN, METRICS_DOMAIN, zero-padded */
    uint8_t metrics_person[16];
    CanonType *canon;
    Py_ssize_t n_canon;
    int32_t roots[N_ROOTS];
};

/* A varint as upb writes it: the fewest bytes (a last byte of 0 only when it is the only one), at
 * most 10, nothing past bit 63. Moves *pp past it; 0 when it is not such a varint (or is cut off). */
static int
canon_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10 && p + i < end; i++) {
        uint8_t b = p[i];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if ((i > 0 && b == 0) || (i == 9 && b > 1)) {
                return 0;
            }
            *pp = p + i + 1;
            *out = v;
            return 1;
        }
    }
    return 0;
}

static int
canon_scalar(int kind, uint64_t v)
{
    switch (kind) {
    case CK_INT32:
        return v == (uint64_t)(int64_t)(int32_t)(uint32_t)v;
    case CK_UINT32:
        return v <= UINT32_MAX;
    case CK_BOOL:
        return v <= 1;
    default:
        return 1;
    }
}

static int
canon_message(const struct SignalConfig *sig, int32_t type, const uint8_t *p, const uint8_t *end, int depth)
{
    if (depth > MAX_DEPTH) {
        return 0;
    }
    const CanonType *t = &sig->canon[type];
    uint32_t last = 0;
    uint64_t oneofs = 0;
    while (p < end) {
        uint64_t tag, v;
        if (!canon_varint(&p, end, &tag) || tag > UINT32_MAX) {
            return 0;
        }
        uint32_t number = (uint32_t)(tag >> 3);
        int wire = (int)(tag & 7);
        if (number == 0 || number >= t->width || t->slots[number].kind == CK_NONE || number < last) {
            return 0;
        }
        CanonSlot slot = t->slots[number];
        if (number == last && (slot.flags & (CF_REPEATED | CF_PACKED)) != CF_REPEATED) {
            return 0; /* a singular field twice (merged or replaced), or a packed field in two pieces */
        }
        if (number != last && slot.oneof >= 0) {
            if ((oneofs >> slot.oneof) & 1) {
                return 0;
            }
            oneofs |= (uint64_t)1 << slot.oneof;
        }
        last = number;
        int implicit = !(slot.flags & (CF_PRESENCE | CF_REPEATED));
        if (slot.flags & CF_PACKED) {
            if (wire != WT_LEN || !canon_varint(&p, end, &v) || v == 0 || v > (uint64_t)(end - p)) {
                return 0;
            }
            const uint8_t *q = p, *qend = p + v;
            p = qend;
            if (slot.kind == CK_I64 || slot.kind == CK_I32) {
                if (v % (slot.kind == CK_I64 ? 8 : 4)) {
                    return 0;
                }
                continue;
            }
            while (q < qend) {
                uint64_t e;
                if (!canon_varint(&q, qend, &e) || !canon_scalar(slot.kind, e)) {
                    return 0;
                }
            }
            continue;
        }
        switch (slot.kind) {
        case CK_I64:
            if (wire != WT_I64 || end - p < 8 || (implicit && load_le64(p) == 0)) {
                return 0;
            }
            p += 8;
            break;
        case CK_I32:
            if (wire != WT_I32 || end - p < 4 || (implicit && load_le32(p) == 0)) {
                return 0;
            }
            p += 4;
            break;
        case CK_VARINT:
        case CK_INT32:
        case CK_UINT32:
        case CK_BOOL:
            if (wire != WT_VARINT || !canon_varint(&p, end, &v) || !canon_scalar(slot.kind, v) || (implicit && v == 0)) {
                return 0;
            }
            break;
        case CK_LEN:
        case CK_MESSAGE:
            if (wire != WT_LEN || !canon_varint(&p, end, &v) || v > (uint64_t)(end - p)) {
                return 0;
            }
            if (slot.kind == CK_LEN && implicit && v == 0) {
                return 0;
            }
            if (slot.kind == CK_MESSAGE && !canon_message(sig, slot.child, p, p + v, depth + 1)) {
                return 0;
            }
            p += v;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* ======================================================================================== */
/* C. Context, rejections, identities, resource and scope headers                             */
/* ======================================================================================== */

typedef struct {
    Ctx c;             /* the reader's and encoders' context (stats, budget, wire errors, attribute stack) */
    struct SignalConfig *sig;
    PyObject *rows;    /* the rows made */
    PyObject *errors;  /* the first max_errors rejection messages */
    PyObject *project; /* the project_id column (a UUID or None) */
    /* The attributes provider_and_model and the event name read, of the item being converted: one dict,
     * emptied for each item (nothing keeps it), so that items do not each allocate a tracked object. */
    PyObject *wanted;
    const uint8_t *person;
    uint8_t salt[16];  /* the project's 16 bytes (zeros without one): identity.resource_prefix */
    uint64_t received; /* logs: the receive time (Unix ns), stamped on records without a time; 0 = unknown */
    Py_ssize_t index;  /* the next log record's / metric's index in the request, for messages */
    Py_ssize_t reserialized; /* items (and headers) hashed from upb's serialization, not their own bytes */
    /* metrics: the timestamps last made (an SDK stamps every point of a collection alike) */
    uint64_t last_time, last_start;
    PyObject *last_ts, *last_start_ts;
} SigCtx;

static inline int
message_wanted(const SigCtx *sc)
{
    return PyList_GET_SIZE(sc->errors) < sc->c.max_errors;
}

/* Counts `count` refused items under `message` (a new reference, or NULL when it is not wanted: see
 * message_wanted; NULL with an exception set is an error). Converted.reject. */
static int
reject_with(SigCtx *sc, Py_ssize_t count, PyObject *message)
{
    if (message == NULL && PyErr_Occurred()) {
        return -1;
    }
    sc->c.rejected += count;
    if (message == NULL) {
        return 0;
    }
    int rc = PyList_Append(sc->errors, message);
    Py_DECREF(message);
    return rc;
}

/* Converted.reject_time: one item whose time is outside the window; `describe` (a new reference, made
 * only when a message is wanted) names it, `what` its time. */
static int
reject_time(SigCtx *sc, PyObject *describe, const char *what, uint64_t ns)
{
    if (ns < sc->c.window_earliest) {
        sc->c.too_old++;
    }
    else {
        sc->c.too_new++;
    }
    sc->c.rejected++;
    if (describe == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *problem = PyObject_CallFunction(sc->c.window_problem, "sK", what, (unsigned long long)ns);
    PyObject *message = problem ? PyUnicode_FromFormat("%U: %U", describe, problem) : NULL;
    Py_DECREF(describe);
    Py_XDECREF(problem);
    if (message == NULL) {
        return -1;
    }
    int rc = PyList_Append(sc->errors, message);
    Py_DECREF(message);
    return rc;
}

/* Hashes a message given as its occurrences (protobuf merges a singular field that occurs more than
 * once) as identity.py does: the bytes upb's serializer writes for it, framed (length first) or not.
 * `depth` is the message's own. */
static int
hash_message(SigCtx *sc, Blake2b *hasher, int root, const Segs *segs, int depth, int framed)
{
    const struct SignalConfig *sig = sc->sig;
    if (segs->n == 0 ||
        (segs->n == 1 && canon_message(sig, sig->roots[root], segs->first.ptr, segs->first.ptr + segs->first.len, depth))) {
        const uint8_t *p = segs->n ? segs->first.ptr : EMPTY;
        size_t n = segs->n ? (size_t)segs->first.len : 0;
        if (framed) {
            b2_frame(hasher, p, n);
        }
        else {
            b2_update(hasher, p, n);
        }
        return 0;
    }
    sc->reserialized++;
    Py_ssize_t total = 0;
    for (Py_ssize_t k = 0; k < segs->n; k++) {
        total += segs_get(segs, k).len;
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL) {
        return -1;
    }
    char *o = PyBytes_AS_STRING(joined);
    for (Py_ssize_t k = 0; k < segs->n; k++) {
        Seg seg = segs_get(segs, k);
        memcpy(o, seg.ptr, (size_t)seg.len);
        o += seg.len;
    }
    PyObject *canonical = PyObject_CallFunction(sig->serialize, "iO", root, joined);
    Py_DECREF(joined);
    if (canonical == NULL) {
        return -1;
    }
    if (!PyBytes_Check(canonical)) {
        Py_DECREF(canonical);
        PyErr_SetString(PyExc_TypeError, "serialize must return bytes");
        return -1;
    }
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(canonical);
    size_t n = (size_t)PyBytes_GET_SIZE(canonical);
    if (framed) {
        b2_frame(hasher, p, n);
    }
    else {
        b2_update(hasher, p, n);
    }
    Py_DECREF(canonical);
    return 0;
}

/* A Uuid (the decoder's uuid_type) of 16 bytes. */
static PyObject *
uuid_of(Ctx *ctx, const uint8_t *bytes)
{
    return new_uuid(ctx->cfg, bytes);
}

/* The row id: Uuid of BLAKE2b(prefix + the item's serialization) (identity.item_id). */
static PyObject *
item_id(SigCtx *sc, const Blake2b *prefix, int root, Seg item, int depth)
{
    Blake2b h = *prefix;
    Segs segs = segs_of(item.ptr, item.len);
    uint8_t digest[16];
    if (hash_message(sc, &h, root, &segs, depth, 0) < 0) {
        return NULL;
    }
    b2_final(&h, digest);
    return uuid_of(&sc->c, digest);
}

/* provider_and_model(attrs) on the attributes it reads (the decoder's keys), as a pair of new
 * references; (None, None) for attributes without any of them, as provider_and_model gives. */
static int
provider_model(SigCtx *sc, PyObject *wanted, PyObject **provider, PyObject **model)
{
    *provider = *model = NULL;
    if (PyDict_GET_SIZE(wanted) == 0) {
        *provider = Py_NewRef(Py_None);
        *model = Py_NewRef(Py_None);
        return 0;
    }
    PyObject *pair = PyObject_CallOneArg(sc->sig->provider_and_model, wanted);
    if (pair == NULL) {
        return -1;
    }
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_TypeError, "provider_and_model must return a pair");
        return -1;
    }
    *provider = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    *model = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    return 0;
}

/* as_text(attrs.get(key)) as a new reference. */
static PyObject *
text_of_key(SigCtx *sc, PyObject *wanted, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(wanted, key);
    if (value == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return PyObject_CallOneArg(sc->sig->as_text, value);
}

/* `own or fallback` (a new reference; `own` is stolen). */
static PyObject *
or_else(PyObject *own, PyObject *fallback)
{
    int truthy = PyObject_IsTrue(own);
    if (truthy < 0) {
        Py_DECREF(own);
        return NULL;
    }
    if (truthy) {
        return own;
    }
    Py_DECREF(own);
    return Py_NewRef(fallback);
}

/* What every row under one ResourceLogs / ResourceMetrics shares (envelope.resource_header). */
typedef struct {
    PyObject *json;     /* resource_attributes */
    PyObject *service;  /* service_name */
    PyObject *provider; /* the resource's provider and model (the rows' fallback) */
    PyObject *model;
    Blake2b prefix;     /* identity.resource_prefix */
} ResourceHeader;

typedef struct {
    PyObject *name; /* scope_name, scope_version */
    PyObject *version;
    Blake2b prefix; /* identity.scope_prefix */
} ScopeHeader;

static void
resource_header_clear(ResourceHeader *h)
{
    Py_CLEAR(h->json);
    Py_CLEAR(h->service);
    Py_CLEAR(h->provider);
    Py_CLEAR(h->model);
}

static void
scope_header_clear(ScopeHeader *h)
{
    Py_CLEAR(h->name);
    Py_CLEAR(h->version);
}

/*
 * One ResourceLogs / ResourceMetrics at `depth`, first pass: its resource and schema URL (they may
 * come after the scopes on the wire) -> the header every row under it shares. The resource's attributes
 * are converted (and counted) whether or not any row comes of them, as resource_header does.
 */
static int
read_resource_header(SigCtx *sc, Seg seg, int depth, ResourceHeader *h)
{
    Ctx *ctx = &sc->c;
    Segs resource = {0};
    Str schema_url = EMPTY_STR;
    PyObject *wanted = NULL;
    int rc = -1;
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, seg.ptr);
    }
    maybe_yield(ctx);
    Reader r = reader_of(seg);
    Field f;
    int more;
    while ((more = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.wire_type != WT_LEN) {
            continue;
        }
        if (f.number == 1 && segs_push(&resource, f.data, f.len) < 0) {
            goto done;
        }
        if (f.number == 3 && read_str(ctx, &f, &schema_url) < 0) {
            goto done;
        }
    }
    if (more < 0) {
        goto done;
    }
    /* Resource (depth + 1): attributes (field 1) are stored, entity_refs (field 3) only checked. */
    if (resource.n && depth + 1 > MAX_DEPTH) {
        depth_error(ctx, resource.first.ptr);
        goto done;
    }
    if ((wanted = PyDict_New()) == NULL) {
        goto done;
    }
    json_begin(ctx);
    if (encode_map(ctx, &resource, 1, depth + 2, &ctx->stats, wanted) < 0 || (h->json = json_str(ctx)) == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < resource.n; k++) {
        Reader rr = reader_of(segs_get(&resource, k));
        while ((more = next_field(ctx, &rr, &f, depth + 1)) > 0) {
            if (f.number == 3 && f.wire_type == WT_LEN && check_entity_ref(ctx, &f, depth + 2) < 0) {
                goto done;
            }
        }
        if (more < 0) {
            goto done;
        }
    }
    if ((h->service = text_of_key(sc, wanted, sc->sig->service_key)) == NULL ||
        provider_model(sc, wanted, &h->provider, &h->model) < 0) {
        goto done;
    }
    b2_init(&h->prefix, sc->person, sc->salt);
    if (hash_message(sc, &h->prefix, ROOT_RESOURCE, &resource, depth + 1, 1) < 0) {
        goto done;
    }
    b2_frame(&h->prefix, schema_url.ptr, (size_t)schema_url.len);
    rc = 0;
done:
    segs_free(&resource);
    Py_XDECREF(wanted);
    return rc;
}

/* One ScopeLogs / ScopeMetrics at `depth`, first pass: its scope and schema URL -> the header its
 * rows share (envelope.scope_header: name and version cleaned; its attributes only checked). */
static int
read_scope_header(SigCtx *sc, Seg seg, int depth, const ResourceHeader *resource, ScopeHeader *h)
{
    Ctx *ctx = &sc->c;
    Segs scope = {0};
    Str schema_url = EMPTY_STR, name = EMPTY_STR, version = EMPTY_STR;
    int rc = -1;
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, seg.ptr);
    }
    maybe_yield(ctx);
    Reader r = reader_of(seg);
    Field f;
    int more;
    while ((more = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.wire_type != WT_LEN) {
            continue;
        }
        if (f.number == 1 && segs_push(&scope, f.data, f.len) < 0) {
            goto done;
        }
        if (f.number == 3 && read_str(ctx, &f, &schema_url) < 0) {
            goto done;
        }
    }
    if (more < 0) {
        goto done;
    }
    if (scope.n && depth + 1 > MAX_DEPTH) {
        depth_error(ctx, scope.first.ptr);
        goto done;
    }
    for (Py_ssize_t k = 0; k < scope.n; k++) {
        Reader sr = reader_of(segs_get(&scope, k));
        while ((more = next_field(ctx, &sr, &f, depth + 1)) > 0) {
            if (f.wire_type != WT_LEN) {
                continue;
            }
            if ((f.number == 1 && read_str(ctx, &f, &name) < 0) || (f.number == 2 && read_str(ctx, &f, &version) < 0)) {
                goto done;
            }
        }
        if (more < 0) {
            goto done;
        }
    }
    if (check_map(ctx, &scope, 3, depth + 2) < 0) {
        goto done;
    }
    Text name_text, version_text;
    text_clean(&name, ctx->limit, &ctx->stats, &name_text);
    text_clean(&version, ctx->limit, &ctx->stats, &version_text);
    if ((h->name = text_str_or_none(ctx, &name_text)) == NULL ||
        (h->version = text_str_or_none(ctx, &version_text)) == NULL) {
        goto done;
    }
    h->prefix = resource->prefix;
    if (hash_message(sc, &h->prefix, ROOT_SCOPE, &scope, depth + 1, 1) < 0) {
        goto done;
    }
    b2_frame(&h->prefix, schema_url.ptr, (size_t)schema_url.len);
    rc = 0;
done:
    segs_free(&scope);
    return rc;
}

/* A tuple of `n` new references (stolen, also on failure), untracked by the garbage collector when
 * it holds only values it does not track (see convert_span), appended to the rows. */
static int
append_row(SigCtx *sc, PyObject **items, Py_ssize_t n)
{
    PyObject *row = PyTuple_New(n);
    if (row == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_CLEAR(items[i]);
        }
        return -1;
    }
    int atoms_only = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        atoms_only &= !PyObject_IS_GC(items[i]) || !PyObject_GC_IsTracked(items[i]);
        PyTuple_SET_ITEM(row, i, items[i]);
        items[i] = NULL;
    }
    if (atoms_only) {
        PyObject_GC_UnTrack(row);
    }
    int rc = PyList_Append(sc->rows, row);
    Py_DECREF(row);
    return rc;
}

/* The ResourceLogs / ResourceMetrics of a request (depth 0, field 1), each through `convert`. */
typedef int (*ScopeConverter)(SigCtx *sc, Seg seg, int depth, const ResourceHeader *resource);

static int
convert_signal_request(SigCtx *sc, const uint8_t *data, Py_ssize_t len, ScopeConverter convert_scope)
{
    Ctx *ctx = &sc->c;
    Reader r = {data, data + len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, 0)) > 0) {
        if (f.number != 1 || f.wire_type != WT_LEN) {
            continue;
        }
        Seg seg = {f.data, f.len};
        ResourceHeader header;
        memset(&header, 0, sizeof header);
        if (read_resource_header(sc, seg, 1, &header) < 0) {
            resource_header_clear(&header);
            return -1;
        }
        /* Second pass: the scopes (field 2), in order. */
        Reader rr = reader_of(seg);
        Field sf;
        while ((rc = next_field(ctx, &rr, &sf, 1)) > 0) {
            if (sf.number == 2 && sf.wire_type == WT_LEN) {
                Seg scope = {sf.data, sf.len};
                if (convert_scope(sc, scope, 2, &header) < 0) {
                    rc = -1;
                    break;
                }
            }
        }
        resource_header_clear(&header);
        if (rc < 0) {
            return -1;
        }
    }
    return rc;
}

/* ======================================================================================== */
/* D. Logs                                                                                    */
/* ======================================================================================== */

#define MAX_SEVERITY 24 /* logs.MAX_SEVERITY: SEVERITY_NUMBER_FATAL4 */
#define LOG_COLUMNS 19

/* The fields of a LogRecord a row needs; the last occurrence of each wins, as in protobuf. */
typedef struct {
    uint64_t time, observed;
    int32_t severity;
    uint32_t flags;
    Str severity_text, event_name;
    Segs body; /* the occurrences of the body AnyValue (merged) */
    const uint8_t *trace_id, *span_id;
    Py_ssize_t trace_id_len, span_id_len;
    Py_ssize_t attrs_base; /* the record's attributes are on the entry stack from here up */
} LogFields;

static int
read_log_record(Ctx *ctx, Seg seg, int depth, LogFields *l)
{
    memset(l, 0, sizeof *l);
    l->severity_text = l->event_name = EMPTY_STR;
    l->trace_id = l->span_id = EMPTY;
    l->attrs_base = ctx->kv_len;
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
            if (f.wire_type == WT_I64) {
                l->time = f.value;
            }
            break;
        case 2:
            if (f.wire_type == WT_VARINT) {
                l->severity = (int32_t)(uint32_t)f.value; /* an enum is int32: upb keeps the low 32 bits */
            }
            break;
        case 3:
            if (len_field && read_str(ctx, &f, &l->severity_text) < 0) {
                return -1;
            }
            break;
        case 5:
            if (len_field && segs_push(&l->body, f.data, f.len) < 0) {
                return -1;
            }
            break;
        case 6:
            if (len_field && kv_collect(ctx, &f, depth + 1) < 0) {
                return -1;
            }
            break;
        case 8:
            if (f.wire_type == WT_I32) {
                l->flags = (uint32_t)f.value;
            }
            break;
        case 9:
            if (len_field) {
                l->trace_id = f.data;
                l->trace_id_len = f.len;
            }
            break;
        case 10:
            if (len_field) {
                l->span_id = f.data;
                l->span_id_len = f.len;
            }
            break;
        case 11:
            if (f.wire_type == WT_I64) {
                l->observed = f.value;
            }
            break;
        case 12:
            if (len_field && read_str(ctx, &f, &l->event_name) < 0) {
                return -1;
            }
            break;
        default: /* 7 dropped_attributes_count: unused */
            break;
        }
    }
    return rc;
}

/* A refused record: nothing of it is counted, but upb would refuse the request for an error in its
 * attributes or body, so they are checked. */
static int
check_log_record(Ctx *ctx, const LogFields *l, int depth)
{
    Py_ssize_t mark = ctx->json.len;
    int rc = map_finish(ctx, l->attrs_base, depth + 1, NULL, NULL);
    if (rc == 0 && l->body.n) {
        rc = encode_any(ctx, &l->body, depth + 1, NULL, NULL);
    }
    ctx->json.len = mark;
    return rc;
}

/* (body, body_json) as logs.py makes them: a string body cleaned, any other value as JSON in both. */
static int
log_body(Ctx *ctx, const LogFields *l, int depth, PyObject **body, PyObject **body_json)
{
    *body = *body_json = NULL;
    AnyValue av;
    int kind = AV_EMPTY;
    Str str = EMPTY_STR;
    if (l->body.n) {
        int rc = any_resolve(ctx, &l->body, depth + 1, &av);
        kind = av.kind;
        str = av.str;
        segs_free(&av.parts);
        if (rc < 0) {
            return -1;
        }
    }
    if (kind == AV_EMPTY) {
        *body = Py_NewRef(Py_None);
        *body_json = Py_NewRef(Py_None);
        return 0;
    }
    if (kind == AV_STRING) {
        Text t;
        text_clean(&str, ctx->limit, &ctx->stats, &t);
        *body = text_str(ctx, &t);
        *body_json = Py_NewRef(Py_None);
        return *body ? 0 : -1;
    }
    json_begin(ctx);
    if (encode_any(ctx, &l->body, depth + 1, &ctx->stats, NULL) < 0 || (*body = json_str(ctx)) == NULL) {
        return -1;
    }
    *body_json = Py_NewRef(*body);
    return 0;
}

static PyObject *
log_describe(SigCtx *sc, Py_ssize_t index)
{
    return message_wanted(sc) ? PyUnicode_FromFormat("log record %zd", index) : NULL;
}

/* One LogRecord at `depth` -> one row appended (logs.convert_logs), or one rejection. */
static int
convert_log_record(SigCtx *sc, Seg seg, int depth, const ResourceHeader *res, const ScopeHeader *scope)
{
    Ctx *ctx = &sc->c;
    LogFields l;
    PyObject *items[LOG_COLUMNS] = {0};
    PyObject *wanted = NULL, *provider = NULL, *model = NULL;
    int rc = -1;
    maybe_yield(ctx);
    Py_ssize_t index = sc->index++;
    if (read_log_record(ctx, seg, depth, &l) < 0) {
        goto done;
    }
    uint64_t stored = l.time ? l.time : l.observed;
    int refused = 1;
    if (l.severity < 0 || l.severity > MAX_SEVERITY) {
        PyObject *message = message_wanted(sc) ? PyUnicode_FromFormat(
                                                     "log record %zd: severity_number %d is outside 0..%d", index,
                                                     (int)l.severity, MAX_SEVERITY)
                                               : NULL;
        if (reject_with(sc, 1, message) < 0) {
            goto done;
        }
    }
    else if (stored && (stored < ctx->window_earliest || stored > ctx->window_latest)) {
        if (reject_time(sc, log_describe(sc, index), l.time ? "time" : "observed time", stored) < 0) {
            goto done;
        }
    }
    else if (!stored && !sc->received) {
        PyObject *message = message_wanted(sc) ? PyUnicode_FromFormat(
                                                     "log record %zd: no time_unix_nano, no observed_time_unix_nano",
                                                     index)
                                               : NULL;
        if (reject_with(sc, 1, message) < 0) {
            goto done;
        }
    }
    else {
        refused = 0;
    }
    if (refused) {
        rc = check_log_record(ctx, &l, depth);
        goto done;
    }
    Stats *stats = &ctx->stats;
    Text t;
    /* attributes first: event_name and provider/model read them */
    Py_ssize_t n_attrs = ctx->kv_len - l.attrs_base;
    wanted = sc->wanted;
    PyDict_Clear(wanted);
    json_begin(ctx);
    if (map_finish(ctx, l.attrs_base, depth + 1, stats, wanted) < 0 || (items[16] = json_str(ctx)) == NULL) {
        goto done;
    }
    if (l.time) {
        items[0] = datetime_from_unix_nanos(l.time);
        items[1] = l.observed ? datetime_from_unix_nanos(l.observed) : Py_NewRef(Py_None);
    }
    else {
        items[0] = datetime_from_unix_nanos(l.observed ? l.observed : sc->received);
        items[1] = items[0] ? Py_NewRef(items[0]) : NULL;
    }
    if (items[0] == NULL || items[1] == NULL) {
        goto done;
    }
    if (l.trace_id_len == 16 && !all_zero(l.trace_id, 16)) {
        items[3] = uuid_of(ctx, l.trace_id);
    }
    else {
        items[3] = Py_NewRef(Py_None);
    }
    if (l.span_id_len == 8 && !all_zero(l.span_id, 8)) {
        items[4] = hex_str(l.span_id, 8);
    }
    else {
        items[4] = Py_NewRef(Py_None);
    }
    if (items[3] == NULL || items[4] == NULL || (items[5] = PyLong_FromLong(l.severity)) == NULL) {
        goto done;
    }
    text_clean(&l.severity_text, ctx->limit, stats, &t);
    if ((items[6] = text_str_or_none(ctx, &t)) == NULL || log_body(ctx, &l, depth, &items[7], &items[8]) < 0) {
        goto done;
    }
    text_clean(&l.event_name, ctx->limit, stats, &t);
    items[9] = t.keep == 0 && t.cut < 0 ? text_of_key(sc, wanted, sc->sig->event_key) : text_str(ctx, &t);
    if (items[9] == NULL || (items[10] = PyLong_FromLong((long)(int32_t)l.flags)) == NULL) {
        goto done;
    }
    if (n_attrs) {
        if (provider_model(sc, wanted, &provider, &model) < 0) {
            goto done;
        }
    }
    else {
        provider = Py_NewRef(Py_None);
        model = Py_NewRef(Py_None);
    }
    items[11] = Py_NewRef(res->service);
    items[12] = or_else(provider, res->provider);
    provider = NULL;
    items[13] = or_else(model, res->model);
    model = NULL;
    if (items[12] == NULL || items[13] == NULL) {
        goto done;
    }
    items[14] = Py_NewRef(scope->name);
    items[15] = Py_NewRef(scope->version);
    items[17] = Py_NewRef(res->json);
    items[18] = Py_NewRef(sc->project);
    /* Last: every part of the record has been checked, so upb's serialization (when needed) cannot fail. */
    if ((items[2] = item_id(sc, &scope->prefix, ROOT_LOG_RECORD, seg, depth)) == NULL) {
        goto done;
    }
    rc = append_row(sc, items, LOG_COLUMNS);
done:
    for (int i = 0; i < LOG_COLUMNS; i++) {
        Py_XDECREF(items[i]);
    }
    Py_XDECREF(provider);
    Py_XDECREF(model);
    segs_free(&l.body);
    return rc;
}

/* One ScopeLogs at `depth`: its header, then its records (field 2) in order. */
static int
convert_scope_logs(SigCtx *sc, Seg seg, int depth, const ResourceHeader *resource)
{
    ScopeHeader scope;
    memset(&scope, 0, sizeof scope);
    int rc = read_scope_header(sc, seg, depth, resource, &scope);
    if (rc == 0) {
        Reader r = reader_of(seg);
        Field f;
        while ((rc = next_field(&sc->c, &r, &f, depth)) > 0) {
            if (f.number == 2 && f.wire_type == WT_LEN) {
                Seg record = {f.data, f.len};
                if (convert_log_record(sc, record, depth + 1, resource, &scope) < 0) {
                    rc = -1;
                    break;
                }
            }
        }
    }
    scope_header_clear(&scope);
    return rc;
}

/* ======================================================================================== */
/* E. Metrics                                                                                 */
/* ======================================================================================== */

/* Metric.data members (their field numbers) and the index of their name in SignalConfig.kinds. */
enum { MK_NONE = 0, MK_GAUGE = 5, MK_SUM = 7, MK_HISTOGRAM = 9, MK_EXPONENTIAL = 10, MK_SUMMARY = 11 };
#define MIN_SCALE (-10) /* metrics.MIN_SCALE, MAX_SCALE */
#define MAX_SCALE 20
#define METRIC_COLUMNS 36
#define BIGINT_MAX ((uint64_t)INT64_MAX)

/* The identity root (serialized message type) of a kind's points. */
static int
root_of(int kind)
{
    switch (kind) {
    case MK_GAUGE:
    case MK_SUM:
        return ROOT_NUMBER;
    case MK_HISTOGRAM:
        return ROOT_HISTOGRAM;
    case MK_EXPONENTIAL:
        return ROOT_EXPONENTIAL;
    default:
        return ROOT_SUMMARY;
    }
}

static int
kind_index(int kind)
{
    switch (kind) {
    case MK_GAUGE:
        return 0;
    case MK_SUM:
        return 1;
    case MK_HISTOGRAM:
        return 2;
    case MK_EXPONENTIAL:
        return 3;
    default:
        return 4;
    }
}

/*
 * Repeated scalar fields are kept as runs of their elements' wire bytes, in order: a packed occurrence
 * is one run, an unpacked one (upb accepts both) a run of one element. Fixed-size elements (fixed64,
 * double) are 8 bytes each; varints (Buckets.bucket_counts) were checked when their run was read.
 */
static Py_ssize_t
runs_bytes(const Segs *runs)
{
    Py_ssize_t n = 0;
    for (Py_ssize_t k = 0; k < runs->n; k++) {
        n += segs_get(runs, k).len;
    }
    return n;
}

/* A packed fixed64 / double occurrence: upb refuses a length that is not a multiple of 8. */
static int
push_fixed64_run(Ctx *ctx, Segs *runs, const Field *f, const uint8_t *after)
{
    if (f->wire_type == WT_I64) {
        return segs_push(runs, after - 8, 8);
    }
    if (f->len % 8) {
        return wire_error(ctx, f->data, "packed fixed64 field whose length is not a multiple of 8");
    }
    return f->len ? segs_push(runs, f->data, f->len) : 0;
}

/* A packed uint64 occurrence (each varint read as upb reads it), or one unpacked varint. */
static int
push_varint_run(Ctx *ctx, Segs *runs, const Field *f, const uint8_t *start, const uint8_t *after)
{
    if (f->wire_type == WT_VARINT) {
        return segs_push(runs, start, after - start);
    }
    Reader r = {f->data, f->data + f->len};
    uint64_t v;
    while (r.p < r.end) {
        if (read_varint(ctx, &r, &v) < 0) {
            return -1;
        }
    }
    return f->len ? segs_push(runs, f->data, f->len) : 0;
}

/* Calls `each` on every element of fixed64 runs; stops at the first non-zero return. */
#define FOR_FIXED64(runs, value, body)                                                                                \
    for (Py_ssize_t run_ = 0; run_ < (runs)->n; run_++) {                                                             \
        Seg seg_ = segs_get((runs), run_);                                                                            \
        for (Py_ssize_t at_ = 0; at_ + 8 <= seg_.len; at_ += 8) {                                                     \
            uint64_t value = load_le64(seg_.ptr + at_);                                                               \
            body                                                                                                      \
        }                                                                                                             \
    }

#define FOR_VARINT(runs, value, body)                                                                                 \
    for (Py_ssize_t run_ = 0; run_ < (runs)->n; run_++) {                                                             \
        Seg seg_ = segs_get((runs), run_);                                                                            \
        const uint8_t *p_ = seg_.ptr, *end_ = seg_.ptr + seg_.len;                                                    \
        while (p_ < end_) {                                                                                           \
            uint64_t value = 0;                                                                                       \
            for (int i_ = 0; i_ < 10 && p_ < end_; i_++) {                                                            \
                uint8_t b_ = *p_++;                                                                                   \
                value |= (uint64_t)(b_ & 0x7f) << (7 * i_);                                                           \
                if (!(b_ & 0x80)) {                                                                                   \
                    break;                                                                                            \
                }                                                                                                     \
            }                                                                                                         \
            body                                                                                                      \
        }                                                                                                             \
    }

static Py_ssize_t
varint_count(const Segs *runs)
{
    Py_ssize_t n = 0;
    FOR_VARINT(runs, v, { (void)v; n++; })
    return n;
}

static double
as_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* ExponentialHistogramDataPoint.Buckets, merged over its occurrences. */
typedef struct {
    int present;
    int32_t offset; /* sint32 */
    Segs counts;    /* varint runs */
} Buckets;

/* The fields of any data point a row needs (each kind reads its own); the last occurrence wins. */
typedef struct {
    uint64_t start, time, count, zero_count;
    uint32_t flags;
    int value_kind;        /* number points: 0, 4 (as_double) or 6 (as_int) */
    uint64_t value;        /* the bits of as_double / as_int */
    int has_sum, has_min, has_max;
    uint64_t sum, min, max, zero_threshold; /* double bits */
    int32_t scale;
    Segs counts, bounds;   /* histogram: fixed64 runs of bucket_counts, explicit_bounds */
    Buckets positive, negative;
    Segs quantiles;        /* summary: the ValueAtQuantile messages */
    Segs exemplars;        /* the Exemplar messages */
    Py_ssize_t attrs_base; /* the point's attributes are on the entry stack from here up */
} PointFields;

static void
point_fields_free(PointFields *p)
{
    segs_free(&p->counts);
    segs_free(&p->bounds);
    segs_free(&p->positive.counts);
    segs_free(&p->negative.counts);
    segs_free(&p->quantiles);
    segs_free(&p->exemplars);
}

static int32_t
zigzag32(uint64_t v)
{
    uint32_t n = (uint32_t)v; /* sint32: upb keeps the low 32 bits, then undoes the zigzag */
    return (int32_t)((n >> 1) ^ (0u - (n & 1)));
}

/* One Buckets occurrence at `depth`: offset (last wins) and its counts' runs. */
static int
read_buckets(Ctx *ctx, const Field *occurrence, int depth, Buckets *b)
{
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, occurrence->data);
    }
    b->present = 1;
    Reader r = {occurrence->data, occurrence->data + occurrence->len};
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.number == 1 && f.wire_type == WT_VARINT) {
            b->offset = zigzag32(f.value);
        }
        else if (f.number == 2 && (f.wire_type == WT_VARINT || f.wire_type == WT_LEN)) {
            /* An unpacked element: its varint ends where the field does and starts after the tag's
             * last byte (the only earlier byte without a continuation bit). */
            const uint8_t *value_start = r.p;
            if (f.wire_type == WT_VARINT) {
                value_start = r.p - 1;
                while (value_start > occurrence->data && (value_start[-1] & 0x80)) {
                    value_start--;
                }
            }
            if (push_varint_run(ctx, &b->counts, &f, value_start, r.p) < 0) {
                return -1;
            }
        }
    }
    return rc;
}

/* One ValueAtQuantile at `depth`: (quantile, value), the last occurrence of each winning. */
static int
read_quantile(Ctx *ctx, Seg seg, int depth, double *quantile, double *value)
{
    *quantile = *value = 0.0;
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, seg.ptr);
    }
    Reader r = reader_of(seg);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.number == 1 && f.wire_type == WT_I64) {
            *quantile = as_double(f.value);
        }
        else if (f.number == 2 && f.wire_type == WT_I64) {
            *value = as_double(f.value);
        }
    }
    return rc;
}

/* Field numbers of each point type (see metrics.proto). */
typedef struct {
    uint32_t attributes, start, time, count, sum, flags, exemplars, min, max;
} PointLayout;

static const PointLayout NUMBER_LAYOUT = {7, 2, 3, 0, 0, 8, 5, 0, 0};
static const PointLayout HISTOGRAM_LAYOUT = {9, 2, 3, 4, 5, 10, 8, 11, 12};
static const PointLayout EXPONENTIAL_LAYOUT = {1, 2, 3, 4, 5, 10, 11, 12, 13};
static const PointLayout SUMMARY_LAYOUT = {7, 2, 3, 4, 5, 8, 0, 0, 0};

static const PointLayout *
layout_of(int kind)
{
    switch (kind) {
    case MK_GAUGE:
    case MK_SUM:
        return &NUMBER_LAYOUT;
    case MK_HISTOGRAM:
        return &HISTOGRAM_LAYOUT;
    case MK_EXPONENTIAL:
        return &EXPONENTIAL_LAYOUT;
    default:
        return &SUMMARY_LAYOUT;
    }
}

/* One data point of `kind` at `depth`: every field read and checked as upb would (strings, packed
 * lengths, nested messages); attributes collected onto the entry stack, exemplars kept as segments. */
static int
read_point(Ctx *ctx, int kind, Seg seg, int depth, PointFields *p)
{
    memset(p, 0, sizeof *p);
    p->attrs_base = ctx->kv_len;
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, seg.ptr);
    }
    const PointLayout *layout = layout_of(kind);
    Reader r = reader_of(seg);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        uint32_t n = f.number;
        int wt = f.wire_type;
        if (n == layout->attributes) {
            if (wt == WT_LEN && kv_collect(ctx, &f, depth + 1) < 0) {
                return -1;
            }
        }
        else if (n == layout->start) {
            if (wt == WT_I64) {
                p->start = f.value;
            }
        }
        else if (n == layout->time) {
            if (wt == WT_I64) {
                p->time = f.value;
            }
        }
        else if (n == layout->flags) {
            if (wt == WT_VARINT) {
                p->flags = (uint32_t)f.value;
            }
        }
        else if (n == layout->exemplars && n) {
            if (wt == WT_LEN) {
                if (depth + 1 > MAX_DEPTH) {
                    return depth_error(ctx, f.data);
                }
                if (segs_push(&p->exemplars, f.data, f.len) < 0) {
                    return -1;
                }
            }
        }
        else if (n == layout->count && n) {
            if (wt == WT_I64) {
                p->count = f.value;
            }
        }
        else if (n == layout->sum && n) {
            if (wt == WT_I64) {
                p->sum = f.value;
                p->has_sum = 1;
            }
        }
        else if (n == layout->min && n) {
            if (wt == WT_I64) {
                p->min = f.value;
                p->has_min = 1;
            }
        }
        else if (n == layout->max && n) {
            if (wt == WT_I64) {
                p->max = f.value;
                p->has_max = 1;
            }
        }
        else if (kind == MK_GAUGE || kind == MK_SUM) {
            if ((n == 4 || n == 6) && wt == WT_I64) { /* as_double, as_int (sfixed64): a oneof */
                p->value_kind = (int)n;
                p->value = f.value;
            }
        }
        else if (kind == MK_HISTOGRAM) {
            if ((n == 6 || n == 7) && (wt == WT_I64 || wt == WT_LEN) &&
                push_fixed64_run(ctx, n == 6 ? &p->counts : &p->bounds, &f, r.p) < 0) {
                return -1;
            }
        }
        else if (kind == MK_EXPONENTIAL) {
            if (n == 6 && wt == WT_VARINT) {
                p->scale = zigzag32(f.value);
            }
            else if (n == 7 && wt == WT_I64) {
                p->zero_count = f.value;
            }
            else if (n == 14 && wt == WT_I64) {
                p->zero_threshold = f.value;
            }
            else if ((n == 8 || n == 9) && wt == WT_LEN &&
                     read_buckets(ctx, &f, depth + 1, n == 8 ? &p->positive : &p->negative) < 0) {
                return -1;
            }
        }
        else if (kind == MK_SUMMARY) {
            if (n == 6 && wt == WT_LEN) {
                double q, v;
                Seg quantile = {f.data, f.len};
                if (read_quantile(ctx, quantile, depth + 1, &q, &v) < 0 || segs_push(&p->quantiles, f.data, f.len) < 0) {
                    return -1;
                }
            }
        }
    }
    return rc;
}

/* One Exemplar at `depth` -> its JSON object (metrics.exemplars_json); stats NULL: only checked. */
static int
encode_exemplar(Ctx *ctx, Seg seg, int depth, Stats *stats)
{
    maybe_yield(ctx);
    uint64_t time = 0, value = 0;
    int value_kind = 0;
    const uint8_t *trace_id = EMPTY, *span_id = EMPTY;
    Py_ssize_t trace_id_len = 0, span_id_len = 0;
    Py_ssize_t base = ctx->kv_len;
    Reader r = reader_of(seg);
    Field f;
    int rc;
    while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
        switch (f.number) {
        case 2:
            if (f.wire_type == WT_I64) {
                time = f.value;
            }
            break;
        case 3: /* as_double */
        case 6: /* as_int (sfixed64) */
            if (f.wire_type == WT_I64) {
                value_kind = (int)f.number;
                value = f.value;
            }
            break;
        case 4:
            if (f.wire_type == WT_LEN) {
                span_id = f.data;
                span_id_len = f.len;
            }
            break;
        case 5:
            if (f.wire_type == WT_LEN) {
                trace_id = f.data;
                trace_id_len = f.len;
            }
            break;
        case 7:
            if (f.wire_type == WT_LEN && kv_collect(ctx, &f, depth + 1) < 0) {
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
    Buf *out = &ctx->json;
    if (buf_puts(out, "{\"time_unix_nano\":") < 0 || json_put_u64(out, time) < 0) {
        return -1;
    }
    if (value_kind && buf_puts(out, ",\"value\":") < 0) {
        return -1;
    }
    if (value_kind == 3 && json_put_double(out, as_double(value), stats) < 0) {
        return -1;
    }
    if (value_kind == 6 && json_put_i64(out, (int64_t)value) < 0) {
        return -1;
    }
    if (trace_id_len == 16 && !all_zero(trace_id, 16) &&
        (buf_puts(out, ",\"trace_id\":") < 0 || json_put_hex(out, trace_id, 16) < 0)) {
        return -1;
    }
    if (span_id_len == 8 && !all_zero(span_id, 8) &&
        (buf_puts(out, ",\"span_id\":") < 0 || json_put_hex(out, span_id, 8) < 0)) {
        return -1;
    }
    if (buf_puts(out, ",\"filtered_attributes\":") < 0 || map_finish(ctx, base, depth + 1, stats, NULL) < 0) {
        return -1;
    }
    return buf_putc(out, '}');
}

/* The point's exemplars -> JSON array in ctx->json (appended). */
static int
encode_exemplars(Ctx *ctx, const Segs *exemplars, int depth, Stats *stats)
{
    if (buf_putc(&ctx->json, '[') < 0) {
        return -1;
    }
    for (Py_ssize_t k = 0; k < exemplars->n; k++) {
        if ((k && buf_putc(&ctx->json, ',') < 0) || encode_exemplar(ctx, segs_get(exemplars, k), depth, stats) < 0) {
            return -1;
        }
    }
    return buf_putc(&ctx->json, ']');
}

/* A refused point (or one of a metric that is not converted): nothing counted, everything checked. */
static int
check_point(Ctx *ctx, const PointFields *p, int depth)
{
    Py_ssize_t mark = ctx->json.len;
    int rc = map_finish(ctx, p->attrs_base, depth + 1, NULL, NULL);
    if (rc == 0 && p->exemplars.n) {
        rc = encode_exemplars(ctx, &p->exemplars, depth + 1, NULL);
    }
    ctx->json.len = mark;
    return rc;
}

/* What makes a point unstorable (metrics.histogram_problem, exponential_problem, summary_problem):
 * 1 with *message set (when `word`), 0 for none, -1 on error. */
#define PROBLEM(...) return word ? ((*message = PyUnicode_FromFormat(__VA_ARGS__)) != NULL ? 1 : -1) : 1

static int
histogram_problem(const PointFields *p, int word, PyObject **message)
{
    Py_ssize_t n = runs_bytes(&p->counts) / 8, n_bounds = runs_bytes(&p->bounds) / 8;
    if (n && n != n_bounds + 1) {
        PROBLEM("bucket_counts has %zd entries, expected len(explicit_bounds) + 1 = %zd", n, n_bounds + 1);
    }
    if (!n && n_bounds) {
        PROBLEM("bucket_counts is empty but explicit_bounds has %zd entries", n_bounds);
    }
    Py_ssize_t i = 0;
    double previous = 0.0;
    FOR_FIXED64(&p->bounds, bits, {
        double bound = as_double(bits);
        if (isnan(bound)) {
            PROBLEM("explicit_bounds[%zd] is NaN", i);
        }
        if (i && !(previous < bound)) {
            PROBLEM("explicit_bounds is not strictly increasing at index %zd", i);
        }
        previous = bound;
        i++;
    })
    if (p->count > BIGINT_MAX) {
        PROBLEM("count is over 2^63-1 (bigint)");
    }
    FOR_FIXED64(&p->counts, count, {
        if (count > BIGINT_MAX) {
            PROBLEM("bucket_counts holds a count over 2^63-1 (bigint)");
        }
    })
    return 0;
}

static int
varints_over_bigint(const Segs *runs)
{
    FOR_VARINT(runs, v, {
        if (v > BIGINT_MAX) {
            return 1;
        }
    })
    return 0;
}

static int
exponential_problem(const PointFields *p, int word, PyObject **message)
{
    if (p->scale < MIN_SCALE || p->scale > MAX_SCALE) {
        PROBLEM("scale %d is outside [%d, %d]", (int)p->scale, MIN_SCALE, MAX_SCALE);
    }
    double threshold = as_double(p->zero_threshold);
    if (!(threshold >= 0)) {
        if (!word) {
            return 1;
        }
        PyObject *number = PyFloat_FromDouble(threshold);
        if (number == NULL) {
            return -1;
        }
        *message = PyUnicode_FromFormat("zero_threshold %S is not a non-negative number", number);
        Py_DECREF(number);
        return *message ? 1 : -1;
    }
    if (p->count > BIGINT_MAX || p->zero_count > BIGINT_MAX) {
        PROBLEM("count or zero_count is over 2^63-1 (bigint)");
    }
    if (varints_over_bigint(&p->positive.counts)) {
        PROBLEM("positive.bucket_counts holds a count over 2^63-1 (bigint)");
    }
    if (varints_over_bigint(&p->negative.counts)) {
        PROBLEM("negative.bucket_counts holds a count over 2^63-1 (bigint)");
    }
    return 0;
}

static int
summary_problem(Ctx *ctx, const PointFields *p, int depth, int word, PyObject **message)
{
    for (Py_ssize_t k = 0; k < p->quantiles.n; k++) {
        double q, v;
        if (read_quantile(ctx, segs_get(&p->quantiles, k), depth + 1, &q, &v) < 0) {
            return -1;
        }
        if (!(q >= 0.0 && q <= 1.0)) {
            if (!word) {
                return 1;
            }
            PyObject *number = PyFloat_FromDouble(q);
            if (number == NULL) {
                return -1;
            }
            *message = PyUnicode_FromFormat("quantile_values[%zd].quantile %S is outside [0, 1]", k, number);
            Py_DECREF(number);
            return *message ? 1 : -1;
        }
    }
    if (p->count > BIGINT_MAX) {
        PROBLEM("count is over 2^63-1 (bigint)");
    }
    return 0;
}

#undef PROBLEM

/* A list of the values of fixed64 runs: ints (unsigned) or, with `doubles`, floats. Charged to the
 * output: the list and an object per element. */
static PyObject *
fixed64_list(Ctx *ctx, const Segs *runs, int doubles)
{
    Py_ssize_t n = runs_bytes(runs) / 8;
    if (charge_output(ctx, 64 + 40 * n) < 0) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t i = 0;
    FOR_FIXED64(runs, bits, {
        PyObject *item = doubles ? PyFloat_FromDouble(as_double(bits)) : PyLong_FromUnsignedLongLong(bits);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i++, item);
    })
    return list;
}

static PyObject *
varint_list(Ctx *ctx, const Segs *runs)
{
    Py_ssize_t n = varint_count(runs);
    if (charge_output(ctx, 64 + 40 * n) < 0) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t i = 0;
    FOR_VARINT(runs, v, {
        PyObject *item = PyLong_FromUnsignedLongLong(v);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i++, item);
    })
    return list;
}

static PyObject *
optional_double(int present, uint64_t bits)
{
    return present ? PyFloat_FromDouble(as_double(bits)) : Py_NewRef(Py_None);
}

/* The 17 type-specific columns (value .. quantile_values) of an accepted point, as new references. */
static int
point_middle(Ctx *ctx, int kind, const PointFields *p, int depth, PyObject **mid)
{
    for (int i = 0; i < 17; i++) {
        mid[i] = NULL;
    }
    switch (kind) {
    case MK_GAUGE:
    case MK_SUM:
        if (p->value_kind == 4) {
            mid[0] = PyFloat_FromDouble(as_double(p->value));
            mid[1] = Py_NewRef(Py_None);
        }
        else if (p->value_kind == 6) {
            mid[0] = PyFloat_FromDouble((double)(int64_t)p->value);
            mid[1] = PyLong_FromLongLong((long long)(int64_t)p->value);
        }
        else {
            mid[0] = Py_NewRef(Py_None);
            mid[1] = Py_NewRef(Py_None);
        }
        break;
    case MK_HISTOGRAM:
        mid[2] = PyLong_FromUnsignedLongLong(p->count);
        mid[3] = optional_double(p->has_sum, p->sum);
        mid[4] = optional_double(p->has_min, p->min);
        mid[5] = optional_double(p->has_max, p->max);
        mid[6] = fixed64_list(ctx, &p->counts, 0);
        mid[7] = mid[6] ? fixed64_list(ctx, &p->bounds, 1) : NULL;
        break;
    case MK_EXPONENTIAL:
        mid[2] = PyLong_FromUnsignedLongLong(p->count);
        mid[3] = optional_double(p->has_sum, p->sum);
        mid[4] = optional_double(p->has_min, p->min);
        mid[5] = optional_double(p->has_max, p->max);
        mid[8] = PyLong_FromLong(p->scale);
        mid[9] = PyLong_FromUnsignedLongLong(p->zero_count);
        mid[10] = PyFloat_FromDouble(as_double(p->zero_threshold));
        if (p->positive.present) {
            mid[11] = PyLong_FromLong(p->positive.offset);
            mid[12] = varint_list(ctx, &p->positive.counts);
        }
        if (p->negative.present) {
            mid[13] = PyLong_FromLong(p->negative.offset);
            mid[14] = varint_list(ctx, &p->negative.counts);
        }
        break;
    default: { /* summary */
        mid[2] = PyLong_FromUnsignedLongLong(p->count);
        mid[3] = PyFloat_FromDouble(as_double(p->sum));
        Py_ssize_t n = p->quantiles.n;
        if (charge_output(ctx, 2 * (64 + 32 * n)) < 0) {
            break;
        }
        mid[15] = PyList_New(n);
        mid[16] = PyList_New(n);
        for (Py_ssize_t k = 0; mid[15] && mid[16] && k < n; k++) {
            double q, v;
            PyObject *qo = NULL, *vo = NULL;
            if (read_quantile(ctx, segs_get(&p->quantiles, k), depth + 1, &q, &v) < 0 ||
                (qo = PyFloat_FromDouble(q)) == NULL || (vo = PyFloat_FromDouble(v)) == NULL) {
                Py_XDECREF(qo);
                Py_CLEAR(mid[15]);
                break;
            }
            PyList_SET_ITEM(mid[15], k, qo);
            PyList_SET_ITEM(mid[16], k, vo);
        }
        break;
    }
    }
    /* Every column not set above is None; a failure left an exception (or the budget's mark). */
    int failed = PyErr_Occurred() != NULL || ctx->over_budget || ctx->err_what != NULL;
    for (int i = 0; i < 17; i++) {
        if (mid[i] == NULL) {
            mid[i] = Py_NewRef(Py_None);
        }
    }
    if (failed) {
        for (int i = 0; i < 17; i++) {
            Py_CLEAR(mid[i]);
        }
        return -1;
    }
    return 0;
}

/* What the points of one metric share. */
typedef struct {
    int kind;
    PyObject *head[6];       /* metric_name, metric_type, description, unit, temporality, is_monotonic */
    PyObject *short_name;    /* metrics._short(name), for messages (made when first needed) */
    Blake2b series;          /* the identity prefix of the metric's points */
    const ResourceHeader *resource;
    const ScopeHeader *scope;
} MetricHead;

static PyObject *
point_describe(SigCtx *sc, MetricHead *m, Py_ssize_t point_index)
{
    if (!message_wanted(sc)) {
        return NULL;
    }
    if (m->short_name == NULL) {
        PyObject *name = m->head[0];
        if (PyUnicode_GET_LENGTH(name) <= 64) {
            m->short_name = Py_NewRef(name);
        }
        else {
            PyObject *cut = PyUnicode_Substring(name, 0, 64);
            PyObject *ellipsis = PyUnicode_FromOrdinal(0x2026);
            m->short_name = cut && ellipsis ? PyUnicode_Concat(cut, ellipsis) : NULL;
            Py_XDECREF(cut);
            Py_XDECREF(ellipsis);
            if (m->short_name == NULL) {
                return NULL;
            }
        }
    }
    return PyUnicode_FromFormat("metric %R data point %zd", m->short_name, point_index);
}

/* A datetime for `ns`, reusing the last one made for the same value (metrics.convert_metrics). */
static PyObject *
cached_datetime(uint64_t ns, uint64_t *last_ns, PyObject **last)
{
    if (*last == NULL || *last_ns != ns) {
        PyObject *made = datetime_from_unix_nanos(ns);
        if (made == NULL) {
            return NULL;
        }
        Py_XSETREF(*last, made);
        *last_ns = ns;
    }
    return Py_NewRef(*last);
}

/* Refuses one point for `problem` (a new reference; NULL: not worded, see message_wanted). 1, or -1. */
static int
refuse_point(SigCtx *sc, MetricHead *m, Py_ssize_t point_index, PyObject *problem)
{
    PyObject *message = NULL;
    if (problem != NULL) {
        PyObject *describe = point_describe(sc, m, point_index);
        message = describe ? PyUnicode_FromFormat("%U: %U", describe, problem) : NULL;
        Py_XDECREF(describe);
        Py_DECREF(problem);
        if (message == NULL) {
            return -1;
        }
    }
    return reject_with(sc, 1, message) < 0 ? -1 : 1;
}

/* Whether a point is refused (counted and worded here): 1 refused, 0 accepted, -1 error. The rules
 * and their order are metrics.convert_metrics'. */
static int
point_refused(SigCtx *sc, MetricHead *m, const PointFields *p, int depth, Py_ssize_t point_index)
{
    Ctx *ctx = &sc->c;
    int word = message_wanted(sc);
    if (p->time == 0) {
        PyObject *problem = word ? PyUnicode_FromString("time_unix_nano is missing") : NULL;
        if (word && problem == NULL) {
            return -1;
        }
        return refuse_point(sc, m, point_index, problem);
    }
    if (p->time < ctx->window_earliest || p->time > ctx->window_latest) {
        return reject_time(sc, point_describe(sc, m, point_index), "time", p->time) < 0 ? -1 : 1;
    }
    PyObject *problem = NULL;
    int found = 0;
    if (m->kind == MK_HISTOGRAM) {
        found = histogram_problem(p, word, &problem);
    }
    else if (m->kind == MK_EXPONENTIAL) {
        found = exponential_problem(p, word, &problem);
    }
    else if (m->kind == MK_SUMMARY) {
        found = summary_problem(ctx, p, depth, word, &problem);
    }
    if (found <= 0) {
        return found;
    }
    return refuse_point(sc, m, point_index, problem);
}

/* One data point at `depth` -> a row, or a rejection. */
static int
convert_point(SigCtx *sc, MetricHead *m, Seg seg, int depth, Py_ssize_t point_index)
{
    Ctx *ctx = &sc->c;
    PointFields p;
    PyObject *items[METRIC_COLUMNS] = {0};
    PyObject *wanted = NULL, *provider = NULL, *model = NULL;
    int rc = -1;
    maybe_yield(ctx);
    if (read_point(ctx, m->kind, seg, depth, &p) < 0) {
        goto done;
    }
    int refused = point_refused(sc, m, &p, depth, point_index);
    if (refused < 0) {
        goto done;
    }
    if (refused) {
        rc = check_point(ctx, &p, depth);
        goto done;
    }
    Stats *stats = &ctx->stats;
    Py_ssize_t n_attrs = ctx->kv_len - p.attrs_base;
    wanted = sc->wanted;
    PyDict_Clear(wanted);
    json_begin(ctx);
    if (map_finish(ctx, p.attrs_base, depth + 1, stats, wanted) < 0 || (items[33] = json_str(ctx)) == NULL) {
        goto done;
    }
    if ((items[0] = cached_datetime(p.time, &sc->last_time, &sc->last_ts)) == NULL) {
        goto done;
    }
    items[1] = p.start ? cached_datetime(p.start, &sc->last_start, &sc->last_start_ts) : Py_NewRef(Py_None);
    if (items[1] == NULL) {
        goto done;
    }
    for (int i = 0; i < 6; i++) {
        items[3 + i] = Py_NewRef(m->head[i]);
    }
    if (point_middle(ctx, m->kind, &p, depth, items + 9) < 0) {
        goto done;
    }
    if (p.exemplars.n) {
        json_begin(ctx);
        if (encode_exemplars(ctx, &p.exemplars, depth + 1, stats) < 0 || (items[26] = json_str(ctx)) == NULL) {
            goto done;
        }
    }
    else {
        items[26] = Py_NewRef(Py_None);
    }
    if ((items[27] = PyLong_FromLong((long)(int32_t)p.flags)) == NULL) {
        goto done;
    }
    if (n_attrs) {
        if (provider_model(sc, wanted, &provider, &model) < 0) {
            goto done;
        }
    }
    else {
        provider = Py_NewRef(Py_None);
        model = Py_NewRef(Py_None);
    }
    items[28] = Py_NewRef(m->resource->service);
    items[29] = or_else(provider, m->resource->provider);
    provider = NULL;
    items[30] = or_else(model, m->resource->model);
    model = NULL;
    if (items[29] == NULL || items[30] == NULL) {
        goto done;
    }
    items[31] = Py_NewRef(m->scope->name);
    items[32] = Py_NewRef(m->scope->version);
    items[34] = Py_NewRef(m->resource->json);
    items[35] = Py_NewRef(sc->project);
    /* Last: every part of the point has been checked, so upb's serialization (when needed) cannot fail. */
    if ((items[2] = item_id(sc, &m->series, root_of(m->kind), seg, depth)) == NULL) {
        goto done;
    }
    rc = append_row(sc, items, METRIC_COLUMNS);
done:
    for (int i = 0; i < METRIC_COLUMNS; i++) {
        Py_XDECREF(items[i]);
    }
    Py_XDECREF(provider);
    Py_XDECREF(model);
    point_fields_free(&p);
    return rc;
}

/* The data message of a metric (Gauge, Sum, ...; its merged occurrences at `depth`): temporality and
 * monotonicity (last occurrence wins) and how many points it holds. */
static int
read_metric_data(Ctx *ctx, const Segs *data, int depth, int32_t *temporality, int *monotonic, Py_ssize_t *points)
{
    *temporality = 0;
    *monotonic = 0;
    *points = 0;
    if (data->n && depth > MAX_DEPTH) {
        return depth_error(ctx, data->first.ptr);
    }
    for (Py_ssize_t k = 0; k < data->n; k++) {
        Reader r = reader_of(segs_get(data, k));
        Field f;
        int rc;
        while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
            if (f.number == 1 && f.wire_type == WT_LEN) {
                (*points)++;
            }
            else if (f.number == 2 && f.wire_type == WT_VARINT) {
                *temporality = (int32_t)(uint32_t)f.value;
            }
            else if (f.number == 3 && f.wire_type == WT_VARINT) {
                *monotonic = f.value != 0;
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* The points of a data message (its merged occurrences at `depth`), in order: converted with `m`, or,
 * without it, only checked (a metric without a name, a data member a later one replaced). */
static int
each_point(SigCtx *sc, int kind, const Segs *data, int depth, MetricHead *m)
{
    Ctx *ctx = &sc->c;
    Py_ssize_t point_index = 0;
    for (Py_ssize_t k = 0; k < data->n; k++) {
        Reader r = reader_of(segs_get(data, k));
        Field f;
        int rc;
        while ((rc = next_field(ctx, &r, &f, depth)) > 0) {
            if (f.number != 1 || f.wire_type != WT_LEN) {
                continue;
            }
            Seg point = {f.data, f.len};
            if (m != NULL) {
                rc = convert_point(sc, m, point, depth + 1, point_index++);
            }
            else {
                PointFields p;
                maybe_yield(ctx);
                rc = read_point(ctx, kind, point, depth + 1, &p);
                if (rc == 0) {
                    rc = check_point(ctx, &p, depth + 1);
                }
                point_fields_free(&p);
            }
            if (rc < 0) {
                return -1;
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* A data message nothing is stored of (a member a later one replaced): checked as upb parsed it. */
static int
check_metric_data(SigCtx *sc, int kind, const Segs *data, int depth)
{
    int32_t temporality;
    int monotonic;
    Py_ssize_t points;
    if (read_metric_data(&sc->c, data, depth, &temporality, &monotonic, &points) < 0) {
        return -1;
    }
    return each_point(sc, kind, data, depth, NULL);
}

/* One Metric at `depth` -> a row per data point (metrics.convert_metrics). */
static int
convert_metric(SigCtx *sc, Seg seg, int depth, const ResourceHeader *resource, const ScopeHeader *scope)
{
    Ctx *ctx = &sc->c;
    Str name = EMPTY_STR, description = EMPTY_STR, unit = EMPTY_STR;
    int kind = MK_NONE;
    Segs data = {0};
    MetricHead m;
    memset(&m, 0, sizeof m);
    int rc = -1;
    maybe_yield(ctx);
    Py_ssize_t index = sc->index++;
    if (depth > MAX_DEPTH) {
        return depth_error(ctx, seg.ptr);
    }
    Reader r = reader_of(seg);
    Field f;
    int more;
    while ((more = next_field(ctx, &r, &f, depth)) > 0) {
        if (f.wire_type != WT_LEN) {
            continue;
        }
        int failed = 0;
        switch (f.number) {
        case 1:
            failed = read_str(ctx, &f, &name) < 0;
            break;
        case 2:
            failed = read_str(ctx, &f, &description) < 0;
            break;
        case 3:
            failed = read_str(ctx, &f, &unit) < 0;
            break;
        case MK_GAUGE:
        case MK_SUM:
        case MK_HISTOGRAM:
        case MK_EXPONENTIAL:
        case MK_SUMMARY:
            /* The oneof: a later member replaces an earlier one (which upb parsed all the same: it is
             * checked), the same member again is merged into it. */
            if (kind != (int)f.number) {
                if (kind != MK_NONE && check_metric_data(sc, kind, &data, depth + 1) < 0) {
                    goto done;
                }
                segs_free(&data);
                kind = (int)f.number;
            }
            failed = segs_push(&data, f.data, f.len) < 0;
            break;
        default: /* 12 metadata: checked below */
            break;
        }
        if (failed) {
            goto done;
        }
    }
    if (more < 0) {
        goto done;
    }
    Segs self = segs_of(seg.ptr, seg.len);
    if (check_map(ctx, &self, 12, depth + 1) < 0) { /* metadata: not stored */
        goto done;
    }
    if (kind == MK_NONE) {
        rc = 0; /* no data: nothing to store, nothing to refuse */
        goto done;
    }
    int32_t temporality_code;
    int monotonic;
    Py_ssize_t points;
    if (read_metric_data(ctx, &data, depth + 1, &temporality_code, &monotonic, &points) < 0) {
        goto done;
    }
    if (name.len == 0) {
        if (points) {
            PyObject *message = message_wanted(sc) ? PyUnicode_FromFormat("metric %zd has no name (%zd data point(s))",
                                                                          index, points)
                                                   : NULL;
            if (reject_with(sc, points, message) < 0) {
                goto done;
            }
        }
        rc = each_point(sc, kind, &data, depth + 1, NULL);
        goto done;
    }
    Stats *stats = &ctx->stats;
    Text t;
    struct SignalConfig *sig = sc->sig;
    PyObject *temporality = Py_None;
    if (kind != MK_GAUGE && kind != MK_SUMMARY && temporality_code >= 0 &&
        temporality_code < PyTuple_GET_SIZE(sig->temporalities)) {
        temporality = PyTuple_GET_ITEM(sig->temporalities, temporality_code);
    }
    PyObject *kind_name = sig->kinds[kind_index(kind)];
    text_clean(&name, ctx->limit, stats, &t);
    if ((m.head[0] = text_str(ctx, &t)) == NULL) {
        goto done;
    }
    m.head[1] = Py_NewRef(kind_name);
    text_clean(&description, ctx->limit, stats, &t);
    if ((m.head[2] = text_str_or_none(ctx, &t)) == NULL) {
        goto done;
    }
    text_clean(&unit, ctx->limit, stats, &t);
    if ((m.head[3] = text_str_or_none(ctx, &t)) == NULL) {
        goto done;
    }
    m.head[4] = Py_NewRef(temporality);
    m.head[5] = Py_NewRef(kind == MK_SUM ? (monotonic ? Py_True : Py_False) : Py_None);
    /* identity.extend(scope, name, description, unit, kind, temporality or "", "m" if monotonic) */
    m.series = scope->prefix;
    b2_frame(&m.series, name.ptr, (size_t)name.len);
    b2_frame(&m.series, description.ptr, (size_t)description.len);
    b2_frame(&m.series, unit.ptr, (size_t)unit.len);
    Py_ssize_t text_len;
    const char *text = PyUnicode_AsUTF8AndSize(kind_name, &text_len);
    if (text == NULL) {
        goto done;
    }
    b2_frame(&m.series, (const uint8_t *)text, (size_t)text_len);
    if (temporality == Py_None) {
        b2_frame(&m.series, EMPTY, 0);
    }
    else {
        if ((text = PyUnicode_AsUTF8AndSize(temporality, &text_len)) == NULL) {
            goto done;
        }
        b2_frame(&m.series, (const uint8_t *)text, (size_t)text_len);
    }
    b2_frame(&m.series, (const uint8_t *)"m", kind == MK_SUM && monotonic ? 1 : 0);
    m.kind = kind;
    m.resource = resource;
    m.scope = scope;
    rc = each_point(sc, kind, &data, depth + 1, &m);
done:
    for (int i = 0; i < 6; i++) {
        Py_XDECREF(m.head[i]);
    }
    Py_XDECREF(m.short_name);
    segs_free(&data);
    return rc;
}

/* One ScopeMetrics at `depth`: its header, then its metrics (field 2) in order. */
static int
convert_scope_metrics(SigCtx *sc, Seg seg, int depth, const ResourceHeader *resource)
{
    ScopeHeader scope;
    memset(&scope, 0, sizeof scope);
    int rc = read_scope_header(sc, seg, depth, resource, &scope);
    if (rc == 0) {
        Reader r = reader_of(seg);
        Field f;
        while ((rc = next_field(&sc->c, &r, &f, depth)) > 0) {
            if (f.number == 2 && f.wire_type == WT_LEN) {
                Seg metric = {f.data, f.len};
                if (convert_metric(sc, metric, depth + 1, resource, &scope) < 0) {
                    rc = -1;
                    break;
                }
            }
        }
    }
    scope_header_clear(&scope);
    return rc;
}

/* ======================================================================================== */
/* F. The SignalDecoder type                                                                  */
/* ======================================================================================== */

PyDoc_STRVAR(decode_signal_doc,
             "decode_logs(body, limit, max_errors, max_output, earliest, latest, received, window_problem,\n"
             "            project, salt)\n"
             "decode_metrics(...the same...)\n"
             "    -> (rows, rejected, errors, truncated_values, nul_replaced, non_finite_numbers, output_bytes,\n"
             "        too_old, too_new, reserialized)\n\n"
             "body: bytes (immutable: the GIL is released now and then during the decode).\n"
             "earliest, latest: accepted item times (Unix ns, inclusive); an item outside is rejected with\n"
             "'<item>: ' + window_problem(what, ns), and counted in too_old / too_new.\n"
             "received: logs: the receive time stamped on records without any time (0: such a record is\n"
             "rejected). project: the project_id column (None without one); salt: its 16 bytes or None.\n"
             "rows: `llm_logs` / `llm_metrics` row tuples (receiver.schema), as logs.convert_logs and\n"
             "metrics.convert_metrics make them. errors: the first max_errors rejection messages.\n"
             "reserialized: identities hashed from serialize(...) because the item's own bytes were not\n"
             "in upb's form. Raises the decoder's error type for bytes upb would refuse, and its budget error\n"
             "type as soon as output_bytes would exceed max_output.");

static PyObject *
signal_decode(TraceDecoder *self, PyObject *args, int metrics)
{
    PyObject *body, *window_problem, *project, *salt;
    Py_ssize_t limit, max_errors, max_output;
    unsigned long long earliest, latest, received;
    if (self->signal == NULL) {
        PyErr_SetString(PyExc_TypeError, "SignalDecoder was not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "SnnnKKKOOO:decode", &body, &limit, &max_errors, &max_output, &earliest, &latest,
                          &received, &window_problem, &project, &salt)) {
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
    if (salt != Py_None && (!PyBytes_Check(salt) || PyBytes_GET_SIZE(salt) != 16)) {
        PyErr_SetString(PyExc_TypeError, "salt must be 16 bytes or None");
        return NULL;
    }
    SigCtx sc;
    memset(&sc, 0, sizeof sc);
    Ctx *ctx = &sc.c;
    ctx->cfg = self;
    ctx->base = (const uint8_t *)PyBytes_AS_STRING(body);
    ctx->limit = limit;
    ctx->max_errors = max_errors;
    ctx->max_output = max_output;
    ctx->window_earliest = earliest;
    ctx->window_latest = latest;
    ctx->window_problem = window_problem;
    sc.sig = self->signal;
    sc.project = project;
    sc.received = received;
    sc.person = metrics ? self->signal->metrics_person : self->signal->logs_person;
    if (salt != Py_None) {
        memcpy(sc.salt, PyBytes_AS_STRING(salt), 16);
    }
    sc.rows = PyList_New(0);
    sc.errors = PyList_New(0);
    sc.wanted = PyDict_New();
    PyObject *result = NULL;
    if (sc.rows && sc.errors && sc.wanted) {
        ScopeConverter convert = metrics ? convert_scope_metrics : convert_scope_logs;
        if (convert_signal_request(&sc, ctx->base, PyBytes_GET_SIZE(body), convert) == 0) {
            result = Py_BuildValue("(OnOnnnnnnn)", sc.rows, ctx->rejected, sc.errors, ctx->stats.truncated_values,
                                   ctx->stats.nul_replaced, ctx->stats.non_finite_numbers, ctx->out_bytes,
                                   ctx->too_old, ctx->too_new, sc.reserialized);
        }
        else {
            raise_failure(ctx, self->error_type, self->budget_error);
        }
    }
    Py_XDECREF(sc.rows);
    Py_XDECREF(sc.errors);
    Py_XDECREF(sc.wanted);
    Py_XDECREF(sc.last_ts);
    Py_XDECREF(sc.last_start_ts);
    kv_pop_to(ctx, 0);
    PyMem_Free(ctx->kv);
    PyMem_Free(ctx->json.data);
    PyMem_Free(ctx->text.data);
    return result;
}

static PyObject *
SignalDecoder_decode_logs(TraceDecoder *self, PyObject *args)
{
    return signal_decode(self, args, 0);
}

static PyObject *
SignalDecoder_decode_metrics(TraceDecoder *self, PyObject *args)
{
    return signal_decode(self, args, 1);
}

static void
free_signal_config(struct SignalConfig *sig)
{
    if (sig == NULL) {
        return;
    }
    Py_CLEAR(sig->provider_and_model);
    Py_CLEAR(sig->as_text);
    Py_CLEAR(sig->serialize);
    Py_CLEAR(sig->temporalities);
    for (int i = 0; i < 5; i++) {
        Py_CLEAR(sig->kinds[i]);
    }
    for (Py_ssize_t i = 0; sig->canon != NULL && i < sig->n_canon; i++) {
        PyMem_Free(sig->canon[i].slots);
    }
    PyMem_Free(sig->canon);
    PyMem_Free(sig);
}

static void
signal_config_free(TraceDecoder *self)
{
    struct SignalConfig *sig = self->signal;
    self->signal = NULL;
    free_signal_config(sig);
}

static int
signal_config_traverse(TraceDecoder *self, visitproc visit, void *arg)
{
    struct SignalConfig *sig = self->signal;
    if (sig == NULL) {
        return 0;
    }
    Py_VISIT(sig->provider_and_model);
    Py_VISIT(sig->as_text);
    Py_VISIT(sig->serialize);
    Py_VISIT(sig->temporalities);
    return 0;
}

/* canon[i] = ((number, kind, flags, child, oneof), ...) for message type i (logs_metrics_bytes). */
static int
load_canon(struct SignalConfig *sig, PyObject *canon)
{
    Py_ssize_t n = PyTuple_GET_SIZE(canon);
    sig->canon = PyMem_Calloc((size_t)(n ? n : 1), sizeof(CanonType));
    if (sig->canon == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    sig->n_canon = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fields = PyTuple_GET_ITEM(canon, i);
        if (!PyTuple_Check(fields)) {
            PyErr_SetString(PyExc_TypeError, "each canon type must be a tuple of (number, kind, flags, child, oneof)");
            return -1;
        }
        uint32_t width = 1;
        for (int pass = 0; pass < 2; pass++) {
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(fields); k++) {
                unsigned long number, kind, flags;
                long child, oneof;
                if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, k), "kkkll", &number, &kind, &flags, &child, &oneof)) {
                    return -1;
                }
                if (number == 0 || number > 4096 || kind == CK_NONE || kind > CK_MESSAGE || flags > 7 || oneof < -1 ||
                    oneof > 63 || child < -1 || child >= n || (kind == CK_MESSAGE) != (child >= 0)) {
                    PyErr_Format(PyExc_ValueError, "invalid canon field (%lu, %lu, %lu, %ld, %ld) of type %zd", number,
                                 kind, flags, child, oneof, i);
                    return -1;
                }
                if (pass == 0) {
                    width = number + 1 > width ? (uint32_t)number + 1 : width;
                    continue;
                }
                CanonSlot *slot = &sig->canon[i].slots[number];
                slot->kind = (uint8_t)kind;
                slot->flags = (uint8_t)flags;
                slot->oneof = (int8_t)oneof;
                slot->child = (int32_t)child;
            }
            if (pass == 0) {
                sig->canon[i].width = width;
                sig->canon[i].slots = PyMem_Calloc(width, sizeof(CanonSlot));
                if (sig->canon[i].slots == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
            }
        }
    }
    return 0;
}

static int
load_person(uint8_t out[16], PyObject *domain)
{
    if (!PyBytes_Check(domain) || PyBytes_GET_SIZE(domain) > 16) {
        PyErr_SetString(PyExc_ValueError, "each domain must be bytes of at most 16");
        return -1;
    }
    memset(out, 0, 16);
    memcpy(out, PyBytes_AS_STRING(domain), (size_t)PyBytes_GET_SIZE(domain));
    return 0;
}

static int
SignalDecoder_init(TraceDecoder *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"keys",      "uuid_type",     "loads", "error", "budget_error", "provider_and_model",
                            "as_text",   "serialize",     "temporalities", "canon", "roots", "domains", NULL};
    PyObject *keys, *uuid_type, *loads, *error, *budget_error, *provider_and_model, *as_text, *serialize;
    PyObject *temporalities, *canon, *roots, *domains;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOOOOO!O!O!O!:SignalDecoder", names, &PyTuple_Type, &keys,
                                     &uuid_type, &loads, &error, &budget_error, &provider_and_model, &as_text,
                                     &serialize, &PyTuple_Type, &temporalities, &PyTuple_Type, &canon, &PyTuple_Type,
                                     &roots, &PyTuple_Type, &domains)) {
        return -1;
    }
    if (!PyCallable_Check(provider_and_model) || !PyCallable_Check(as_text) || !PyCallable_Check(serialize)) {
        PyErr_SetString(PyExc_TypeError, "provider_and_model, as_text and serialize must be callable");
        return -1;
    }
    if (PyTuple_GET_SIZE(roots) != N_ROOTS || PyTuple_GET_SIZE(domains) != 2) {
        PyErr_Format(PyExc_ValueError, "roots must hold %d type indices, domains 2 (logs, metrics)", N_ROOTS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(temporalities); i++) {
        PyObject *label = PyTuple_GET_ITEM(temporalities, i);
        if (label != Py_None && !PyUnicode_Check(label)) {
            PyErr_SetString(PyExc_TypeError, "temporalities must be str or None");
            return -1;
        }
    }
    if (self->signal != NULL || decoder_init_common(self, keys, uuid_type, loads, error, budget_error) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "SignalDecoder is already initialised");
        }
        return -1;
    }
    struct SignalConfig *sig = PyMem_Calloc(1, sizeof(struct SignalConfig));
    if (sig == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    static const char *kind_names[5] = {"gauge", "sum", "histogram", "exponential_histogram", "summary"};
    for (int i = 0; i < 5; i++) {
        if ((sig->kinds[i] = PyUnicode_InternFromString(kind_names[i])) == NULL) {
            goto fail;
        }
    }
    if (load_canon(sig, canon) < 0 || load_person(sig->logs_person, PyTuple_GET_ITEM(domains, 0)) < 0 ||
        load_person(sig->metrics_person, PyTuple_GET_ITEM(domains, 1)) < 0) {
        goto fail;
    }
    for (int i = 0; i < N_ROOTS; i++) {
        long root = PyLong_AsLong(PyTuple_GET_ITEM(roots, i));
        if (root == -1 && PyErr_Occurred()) {
            goto fail;
        }
        if (root < 0 || root >= sig->n_canon) {
            PyErr_Format(PyExc_ValueError, "root %ld is not a canon type", root);
            goto fail;
        }
        sig->roots[i] = (int32_t)root;
    }
    sig->service_key = wanted_key(self, (const uint8_t *)"service.name", 12);
    sig->event_key = wanted_key(self, (const uint8_t *)"event.name", 10);
    if (sig->service_key == NULL || sig->event_key == NULL) {
        PyErr_SetString(PyExc_ValueError, "keys must include 'service.name' and 'event.name'");
        goto fail;
    }
    sig->provider_and_model = Py_NewRef(provider_and_model);
    sig->as_text = Py_NewRef(as_text);
    sig->serialize = Py_NewRef(serialize);
    sig->temporalities = Py_NewRef(temporalities);
    self->signal = sig; /* complete: the decode methods check for it */
    return 0;
fail:
    free_signal_config(sig);
    return -1;
}

static PyMethodDef SignalDecoder_methods[] = {
    {"decode_logs", (PyCFunction)SignalDecoder_decode_logs, METH_VARARGS, decode_signal_doc},
    {"decode_metrics", (PyCFunction)SignalDecoder_decode_metrics, METH_VARARGS, decode_signal_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(SignalDecoder_doc,
             "SignalDecoder(keys, uuid_type, loads, error, budget_error, provider_and_model, as_text, serialize,\n"
             "              temporalities, canon, roots, domains)\n\n"
             "Decodes ExportLogsServiceRequest / ExportMetricsServiceRequest bytes into rows (see decode_logs).\n"
             "keys: the attribute keys provider_and_model reads, plus 'service.name' and 'event.name';\n"
             "serialize(root, bytes): upb's serialization of a message of type roots[root]; canon: the schema\n"
             "of those types for the canonical-form check (receiver/convert/logs_metrics_bytes.py); domains:\n"
             "the identity domains of logs and metrics (BLAKE2b personalisation).");

static PyType_Slot SignalDecoder_slots[] = {
    {Py_tp_doc, (void *)SignalDecoder_doc},
    {Py_tp_init, SignalDecoder_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, TraceDecoder_dealloc},
    {Py_tp_traverse, TraceDecoder_traverse},
    {Py_tp_clear, TraceDecoder_clear},
    {Py_tp_methods, SignalDecoder_methods},
    {0, NULL},
};

static PyType_Spec SignalDecoder_spec = {
    .name = "receiver.convert._fastotlp.SignalDecoder",
    .basicsize = sizeof(TraceDecoder),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = SignalDecoder_slots,
};
