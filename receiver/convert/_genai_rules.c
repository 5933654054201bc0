/*
 * LlmRules: the GenAI extraction rules of receiver/convert/genai.py (extract_llm_fields) executed in C
 * on the attribute dict the trace decoder makes, and the `llm_traces` row built around them.
 *
 * Why: running the rules in Python cost ~8 us per span (key matching, value conversion, the dataclass
 * and the row) — more than decoding the span's bytes. The rules are not written twice: the key groups,
 * provider aliases, operation maps and scope rules are genai.py's tables, handed to LlmRules when it
 * is built (receiver/convert/traces_bytes.py). What C does with them reproduces genai.py exactly, and
 * only where it is certain: for anything unusual it answers "don't know" and the span takes the Python
 * reference (traces.span_row) unchanged. Falling back is always correct, only slower.
 *
 * Falls back (extract returns None; span_rows calls the Python fallback) when a span has:
 *   - ai.operationId (Vercel AI SDK) or, without a request model, llm.invocation_parameters;
 *   - any cost attribute (Decimal arithmetic stays in Python);
 *   - a value of a type other than exact str / int / float / bool / list / dict / None;
 *   - a token count given as a string that is not plain ASCII `[ws][+-]digits[ws]` of at most 18
 *     digits, or any token count of 2^60 or more (sums stay far from overflow);
 *   - a provider, operation kind or host that is not ASCII (Unicode lower()/strip() stay in Python);
 *   - a user / session id of more than 128 characters (the hashing of long keys stays in Python).
 * tests/test_native_rules.py compares extract() with extract_llm_fields field by field on generated
 * attribute sets, checks the common spans do not fall back, and compares whole rows with the pure path.
 */

#define RULE_GROUPS 16
enum {
    G_PROVIDER,
    G_REQUEST_MODEL,
    G_RESPONSE_MODEL,
    G_INPUT,
    G_OUTPUT,
    G_TOTAL,
    G_CACHE_READ,
    G_CACHE_CREATION,
    G_REASONING,
    G_INPUT_COST,
    G_OUTPUT_COST,
    G_TOTAL_COST,
    G_USER,
    G_SESSION,
    G_TAGS,
    G_FINISH,
};

/* Token counts at or above this fall back (Python ints do not overflow; sums of six of these fit). */
#define COUNT_NATIVE_LIMIT ((int64_t)1 << 60)
/* Ids longer than this (characters) fall back to genai.as_key (KEY_MAX_BYTES = 512 bytes, 4 per char). */
#define KEY_NATIVE_CHARS 128
#define PROVIDER_CACHE_LIMIT 4096

typedef struct {
    PyObject_HEAD
    PyObject *rank;               /* dict: key -> (group, rank), genai._RANK */
    PyObject *groups;             /* tuple of tuples of keys, genai._GROUPS */
    PyObject *aliases;            /* dict: PROVIDER_ALIASES */
    PyObject *not_providers;      /* frozenset: NOT_PROVIDERS */
    PyObject *azure_suffixes;     /* tuple of str: AZURE_OPENAI_HOST_SUFFIXES */
    PyObject *azure_host_keys;    /* tuple of str: AZURE_HOST_KEYS */
    PyObject *azure_version_key;  /* str: AZURE_API_VERSION_KEY */
    PyObject *operation_keys;     /* tuple of str: OPERATION_KEYS */
    PyObject *request_type_key;   /* "llm.request.type" */
    PyObject *request_types;      /* dict: OPENLLMETRY_REQUEST_TYPES */
    PyObject *openinference_key;  /* "openinference.span.kind" */
    PyObject *openinference_kinds;
    PyObject *traceloop_key;      /* "traceloop.span.kind" */
    PyObject *traceloop_kinds;
    PyObject *ai_sdk_key;         /* AI_SDK_OPERATION_KEY: present -> fall back */
    PyObject *invocation_key;     /* INVOCATION_PARAMETERS_KEY: present without a model -> fall back */
    PyObject *input_excludes;     /* tuple of (prefix, frozenset of providers): INPUT_EXCLUDES_CACHE */
    PyObject *output_excludes;    /* tuple of prefixes: OUTPUT_EXCLUDES_REASONING */
    PyObject *environment_keys;   /* tuple of str: ENVIRONMENT_KEYS */
    PyObject *openai;             /* "openai" */
    PyObject *azure_openai;       /* "azure.ai.openai" */
    PyObject *true_str, *false_str, *unpriced, *pricing;
    PyObject *providers;          /* dict: provider spelling -> name or None (bounded cache) */
    PyObject *group_keys[RULE_GROUPS]; /* borrowed from groups */
} LlmRules;

/* The outcome of a conversion: a value, "none" (certain), or "don't know" (fall back). */
enum { CONV_ERROR = -2, CONV_UNSURE = -1, CONV_NONE = 0, CONV_VALUE = 1 };

static int
plain_type(PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    return v == Py_None || t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type || t == &PyBool_Type ||
           t == &PyList_Type || t == &PyDict_Type;
}

/* genai.as_text: *out = new reference or NULL for None. */
static int
rules_as_text(LlmRules *self, PyObject *v, PyObject **out)
{
    *out = NULL;
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None || t == &PyList_Type || t == &PyDict_Type) {
        return CONV_NONE;
    }
    if (t == &PyUnicode_Type) {
        if (PyUnicode_GET_LENGTH(v) == 0) {
            return CONV_NONE;
        }
        *out = Py_NewRef(v);
        return CONV_VALUE;
    }
    if (t == &PyBool_Type) {
        *out = Py_NewRef(v == Py_True ? self->true_str : self->false_str);
        return CONV_VALUE;
    }
    if (t == &PyLong_Type || t == &PyFloat_Type) {
        *out = PyObject_Str(v);
        return *out ? CONV_VALUE : CONV_ERROR;
    }
    return CONV_UNSURE;
}

/* Python's str.isspace() for ASCII characters. */
static inline int
ascii_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* genai.as_count, where certain: *out is the count (CONV_VALUE) or the value is no count (CONV_NONE). */
static int
rules_as_count(PyObject *v, int64_t *out)
{
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None || t == &PyBool_Type || t == &PyList_Type || t == &PyDict_Type) {
        return CONV_NONE;
    }
    if (t == &PyLong_Type) {
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (n == -1 && PyErr_Occurred()) {
            return CONV_ERROR;
        }
        if (overflow < 0 || (overflow == 0 && n < 0)) {
            return CONV_NONE;
        }
        if (overflow > 0 || n >= COUNT_NATIVE_LIMIT) {
            return CONV_UNSURE; /* (>= 2^62 is None in Python; 2^60..2^62 a count: let Python say) */
        }
        *out = n;
        return CONV_VALUE;
    }
    if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(v);
        if (!isfinite(d) || d != floor(d)) {
            return CONV_NONE;
        }
        if (d < 0) {
            return CONV_NONE;
        }
        if (d >= (double)COUNT_NATIVE_LIMIT) {
            return CONV_UNSURE;
        }
        *out = (int64_t)d;
        return CONV_VALUE;
    }
    if (t == &PyUnicode_Type) {
        if (!PyUnicode_IS_ASCII(v)) {
            return CONV_UNSURE;
        }
        const unsigned char *s = PyUnicode_1BYTE_DATA(v);
        Py_ssize_t n = PyUnicode_GET_LENGTH(v), i = 0, end = n;
        for (Py_ssize_t k = 0; k < n; k++) {
            unsigned char c = s[k];
            if (!ascii_space(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '_') {
                return CONV_NONE; /* int() refuses any other ASCII character in base 10 */
            }
        }
        while (i < end && ascii_space(s[i])) {
            i++;
        }
        while (end > i && ascii_space(s[end - 1])) {
            end--;
        }
        int negative = 0;
        if (i < end && (s[i] == '+' || s[i] == '-')) {
            negative = s[i] == '-';
            i++;
        }
        if (i == end) {
            return CONV_NONE; /* blank, or a sign alone: int() refuses it */
        }
        if (end - i > 18) {
            return CONV_UNSURE;
        }
        int64_t count = 0;
        for (; i < end; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return CONV_UNSURE; /* underscores, inner spaces, letters: Python decides */
            }
            count = count * 10 + (s[i] - '0');
        }
        if (negative && count != 0) {
            return CONV_NONE;
        }
        if (count >= COUNT_NATIVE_LIMIT) {
            return CONV_UNSURE;
        }
        *out = count;
        return CONV_VALUE;
    }
    return CONV_UNSURE;
}

/* genai.as_text_list: *out = new list or NULL for None. */
static int
rules_as_text_list(LlmRules *self, PyObject *v, PyObject **out)
{
    *out = NULL;
    if (v == Py_None) {
        return CONV_NONE;
    }
    if (Py_TYPE(v) != &PyList_Type) {
        PyObject *text;
        int rc = rules_as_text(self, v, &text);
        if (rc != CONV_VALUE) {
            return rc;
        }
        *out = PyList_New(1);
        if (*out == NULL) {
            Py_DECREF(text);
            return CONV_ERROR;
        }
        PyList_SET_ITEM(*out, 0, text);
        PyObject_GC_UnTrack(*out); /* a list of str cannot be in a cycle: see below */
        return CONV_VALUE;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return CONV_ERROR;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        PyObject *text;
        int rc = rules_as_text(self, PyList_GET_ITEM(v, i), &text);
        if (rc < 0) {
            Py_DECREF(list);
            return rc;
        }
        if (text != NULL) {
            int added = PyList_Append(list, text);
            Py_DECREF(text);
            if (added < 0) {
                Py_DECREF(list);
                return CONV_ERROR;
            }
        }
    }
    if (PyList_GET_SIZE(list) == 0) {
        Py_DECREF(list);
        return CONV_NONE;
    }
    /* Only str in it, and nobody adds to a row's list: the collector would never find it in a cycle. The
     * row holding it is then untracked too (rules_row), so the full passes made while tens of thousands
     * of rows wait in the queue skip it instead of walking its 39 values (most chat spans have finish
     * reasons). */
    PyObject_GC_UnTrack(list);
    *out = list;
    return CONV_VALUE;
}

/* genai.as_key for ids short enough that no hashing applies (as_text then). */
static int
rules_as_key(LlmRules *self, PyObject *v, PyObject **out)
{
    *out = NULL;
    if (Py_TYPE(v) == &PyUnicode_Type && PyUnicode_GET_LENGTH(v) > KEY_NATIVE_CHARS) {
        return CONV_UNSURE;
    }
    return rules_as_text(self, v, out);
}

/* An ASCII str -> a new str with `map` applied to every character (the same object when unchanged). */
static PyObject *
ascii_mapped(PyObject *s, int upper)
{
    const unsigned char *data = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s), i = 0;
    for (; i < n; i++) {
        unsigned char c = data[i];
        if (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) {
            break;
        }
    }
    if (i == n) {
        return Py_NewRef(s);
    }
    PyObject *out = PyUnicode_New(n, 127);
    if (out == NULL) {
        return NULL;
    }
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t k = 0; k < n; k++) {
        unsigned char c = data[k];
        if (upper && c >= 'a' && c <= 'z') {
            c = (unsigned char)(c - 32);
        }
        else if (!upper && c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c + 32);
        }
        o[k] = c;
    }
    return out;
}

/* genai._provider_name for an ASCII str: strip, lower, not a framework, an alias or an alias of a
 * prefix before a dot, else the lowered name (None if empty). New reference or NULL with *rc. */
static int
provider_name(LlmRules *self, PyObject *value, PyObject **out)
{
    *out = NULL;
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t i = 0, end = PyUnicode_GET_LENGTH(value);
    while (i < end && ascii_space(s[i])) {
        i++;
    }
    while (end > i && ascii_space(s[end - 1])) {
        end--;
    }
    PyObject *name = PyUnicode_New(end - i, 127);
    if (name == NULL) {
        return CONV_ERROR;
    }
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(name);
    for (Py_ssize_t k = i; k < end; k++) {
        unsigned char c = s[k];
        o[k - i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
    }
    int rc = PySet_Contains(self->not_providers, name);
    if (rc != 0) {
        Py_DECREF(name);
        return rc < 0 ? CONV_ERROR : CONV_NONE;
    }
    PyObject *found = PyDict_GetItemWithError(self->aliases, name);
    if (found == NULL && !PyErr_Occurred()) {
        Py_ssize_t cut = end - i;
        while (found == NULL) {
            const Py_UCS1 *d = PyUnicode_1BYTE_DATA(name);
            while (cut > 0 && d[cut - 1] != '.') {
                cut--;
            }
            if (cut == 0) {
                break;
            }
            cut--; /* the dot */
            PyObject *trimmed = PyUnicode_Substring(name, 0, cut);
            if (trimmed == NULL) {
                Py_DECREF(name);
                return CONV_ERROR;
            }
            found = PyDict_GetItemWithError(self->aliases, trimmed);
            Py_DECREF(trimmed);
            if (found == NULL && PyErr_Occurred()) {
                break;
            }
        }
    }
    if (found == NULL && PyErr_Occurred()) {
        Py_DECREF(name);
        return CONV_ERROR;
    }
    if (found != NULL) {
        Py_DECREF(name);
        *out = Py_NewRef(found);
        return CONV_VALUE;
    }
    if (PyUnicode_GET_LENGTH(name) == 0) {
        Py_DECREF(name);
        return CONV_NONE;
    }
    *out = name;
    return CONV_VALUE;
}

/* genai.normalize_provider, with a bounded cache of the spellings met. */
static int
rules_provider(LlmRules *self, PyObject *value, PyObject **out)
{
    *out = NULL;
    if (Py_TYPE(value) != &PyUnicode_Type) {
        PyObject *text;
        int rc = rules_as_text(self, value, &text);
        if (rc != CONV_VALUE) {
            return rc;
        }
        /* str(int/float), "true"/"false": ASCII */
        rc = provider_name(self, text, out);
        Py_DECREF(text);
        return rc;
    }
    PyObject *cached = PyDict_GetItemWithError(self->providers, value);
    if (cached != NULL) {
        if (cached == Py_None) {
            return CONV_NONE;
        }
        *out = Py_NewRef(cached);
        return CONV_VALUE;
    }
    if (PyErr_Occurred()) {
        return CONV_ERROR;
    }
    if (!PyUnicode_IS_ASCII(value)) {
        return CONV_UNSURE;
    }
    int rc = provider_name(self, value, out);
    if (rc < 0) {
        return rc;
    }
    if (PyDict_GET_SIZE(self->providers) < PROVIDER_CACHE_LIMIT &&
        PyDict_SetItem(self->providers, value, *out ? *out : Py_None) < 0) {
        Py_CLEAR(*out);
        return CONV_ERROR;
    }
    return rc;
}

/* genai._azure_host for an ASCII str: the host of a URL or host[:port] under an Azure suffix. */
static int
azure_host(LlmRules *self, PyObject *value)
{
    const char *s = (const char *)PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), start = 0;
    /* split("//", 1)[-1] */
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (s[i] == '/' && s[i + 1] == '/') {
            start = i + 2;
            break;
        }
    }
    /* .split("/", 1)[0] */
    Py_ssize_t end = start;
    while (end < n && s[end] != '/') {
        end++;
    }
    /* .rsplit(":", 1)[0] */
    for (Py_ssize_t i = end - 1; i >= start; i--) {
        if (s[i] == ':') {
            end = i;
            break;
        }
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(self->azure_suffixes); k++) {
        PyObject *suffix = PyTuple_GET_ITEM(self->azure_suffixes, k);
        Py_ssize_t m = PyUnicode_GET_LENGTH(suffix);
        if (m > end - start) {
            continue;
        }
        const char *suf = (const char *)PyUnicode_1BYTE_DATA(suffix);
        int same = 1;
        for (Py_ssize_t j = 0; j < m && same; j++) {
            char c = s[end - m + j];
            if (c >= 'A' && c <= 'Z') {
                c = (char)(c + 32);
            }
            same = c == suf[j];
        }
        if (same) {
            return 1;
        }
    }
    return 0;
}

/* attrs.get(key) as a borrowed reference (NULL when absent; errors are set). */
static inline PyObject *
get(PyObject *attrs, PyObject *key)
{
    return PyDict_GetItemWithError(attrs, key);
}

/* genai.first: the value (borrowed) of the first of `keys` present and not None; NULL when there is
 * none, or with an error set. */
static PyObject *
first(PyObject *attrs, PyObject *keys)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++) {
        PyObject *v = get(attrs, PyTuple_GET_ITEM(keys, k));
        if (v == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            continue;
        }
        if (v != Py_None) {
            return v;
        }
    }
    return NULL;
}

/* genai.is_azure_openai: 1, 0, or CONV_UNSURE / CONV_ERROR. */
static int
rules_is_azure(LlmRules *self, PyObject *attrs)
{
    PyObject *v = get(attrs, self->azure_version_key);
    if (v != NULL && v != Py_None) {
        return 1;
    }
    if (v == NULL && PyErr_Occurred()) {
        return CONV_ERROR;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(self->azure_host_keys); k++) {
        v = get(attrs, PyTuple_GET_ITEM(self->azure_host_keys, k));
        if (v == NULL) {
            if (PyErr_Occurred()) {
                return CONV_ERROR;
            }
            continue;
        }
        if (Py_TYPE(v) != &PyUnicode_Type || PyUnicode_GET_LENGTH(v) == 0) {
            continue;
        }
        if (!PyUnicode_IS_ASCII(v)) {
            return CONV_UNSURE;
        }
        if (azure_host(self, v)) {
            return 1;
        }
    }
    return 0;
}

/* map.get(lower-or-upper(value), lower(value)) for an ASCII kind name. */
static int
mapped_kind(PyObject *map, PyObject *value, int key_upper, PyObject **out)
{
    *out = NULL;
    if (!PyUnicode_IS_ASCII(value)) {
        return CONV_UNSURE;
    }
    PyObject *lower = ascii_mapped(value, 0);
    if (lower == NULL) {
        return CONV_ERROR;
    }
    PyObject *key = lower;
    if (key_upper && (key = ascii_mapped(value, 1)) == NULL) {
        Py_DECREF(lower);
        return CONV_ERROR;
    }
    PyObject *found = PyDict_GetItemWithError(map, key);
    if (key != lower) {
        Py_DECREF(key);
    }
    if (found == NULL && PyErr_Occurred()) {
        Py_DECREF(lower);
        return CONV_ERROR;
    }
    if (found != NULL) {
        Py_DECREF(lower);
        *out = Py_NewRef(found);
    }
    else {
        *out = lower;
    }
    return CONV_VALUE;
}

/* genai.operation_of (no AI SDK span gets here). */
static int
rules_operation(LlmRules *self, PyObject *attrs, PyObject **out)
{
    *out = NULL;
    PyObject *op = first(attrs, self->operation_keys);
    if (op == NULL && PyErr_Occurred()) {
        return CONV_ERROR;
    }
    if (op != NULL) {
        int rc = rules_as_text(self, op, out);
        if (rc != CONV_NONE) {
            return rc; /* a value, or don't know; a text of None goes on to the span kinds */
        }
    }
    struct {
        PyObject *key, *map;
        int upper;
    } kinds[3] = {
        {self->request_type_key, self->request_types, 0},
        {self->openinference_key, self->openinference_kinds, 1},
        {self->traceloop_key, self->traceloop_kinds, 0},
    };
    for (int k = 0; k < 3; k++) {
        PyObject *v = get(attrs, kinds[k].key);
        if (v == NULL && PyErr_Occurred()) {
            return CONV_ERROR;
        }
        if (v != NULL && Py_TYPE(v) == &PyUnicode_Type && PyUnicode_GET_LENGTH(v) > 0) {
            return mapped_kind(kinds[k].map, v, kinds[k].upper, out);
        }
        if (v != NULL && !plain_type(v)) {
            return CONV_UNSURE;
        }
    }
    return CONV_NONE;
}

/* genai._count: the best key's count; in a crowded group a value that is no count passes to the next
 * key in order of preference (first_count). */
static int
rules_count(LlmRules *self, PyObject *attrs, PyObject **best, int *seen, int group, int64_t *out)
{
    if (best[group] == NULL) {
        return CONV_NONE;
    }
    int rc = rules_as_count(best[group], out);
    if (rc != CONV_NONE || seen[group] < 2) {
        return rc;
    }
    PyObject *keys = self->group_keys[group];
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++) {
        PyObject *v = get(attrs, PyTuple_GET_ITEM(keys, k));
        if (v == NULL) {
            if (PyErr_Occurred()) {
                return CONV_ERROR;
            }
            continue;
        }
        if (v == Py_None) {
            continue;
        }
        rc = rules_as_count(v, out);
        if (rc != CONV_NONE) {
            return rc;
        }
    }
    return CONV_NONE;
}

static int
prefix_of(PyObject *scope, PyObject *prefix)
{
    return (int)PyUnicode_Tailmatch(scope, prefix, 0, PY_SSIZE_T_MAX, -1);
}

/* The LLM fields of one span, in the order of EXTRACT_FIELDS (traces_bytes.py):
 * provider, request_model, response_model, operation, input, output, total, cache_read,
 * cache_creation, reasoning, user_id, session_id, tags, finish_reasons. */
#define N_FIELDS 14
enum {
    F_PROVIDER,
    F_REQUEST_MODEL,
    F_RESPONSE_MODEL,
    F_OPERATION,
    F_INPUT,
    F_OUTPUT,
    F_TOTAL,
    F_CACHE_READ,
    F_CACHE_CREATION,
    F_REASONING,
    F_USER,
    F_SESSION,
    F_TAGS,
    F_FINISH,
};

typedef struct {
    PyObject *obj[N_FIELDS]; /* new references or NULL (None); counts are filled from the ints below */
    int64_t count[N_FIELDS];
    int has_count[N_FIELDS];
} Fields;

static void
fields_clear(Fields *f)
{
    for (int i = 0; i < N_FIELDS; i++) {
        Py_CLEAR(f->obj[i]);
    }
}

/* extract_llm_fields(attrs, scope_name) into *f: CONV_VALUE, CONV_UNSURE (fall back) or CONV_ERROR. */
static int
rules_extract(LlmRules *self, PyObject *attrs, PyObject *scope_name, Fields *f)
{
    memset(f, 0, sizeof(*f));
    PyObject *best[RULE_GROUPS] = {0}; /* borrowed values of the best key per group */
    Py_ssize_t best_rank[RULE_GROUPS];
    int seen[RULE_GROUPS] = {0};
    int rc;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        if (!plain_type(value)) {
            return CONV_UNSURE;
        }
        if (value == Py_None) {
            continue;
        }
        PyObject *where = PyDict_GetItemWithError(self->rank, key);
        if (where == NULL) {
            if (PyErr_Occurred()) {
                return CONV_ERROR;
            }
            continue;
        }
        Py_ssize_t group = PyLong_AsSsize_t(PyTuple_GET_ITEM(where, 0));
        Py_ssize_t rank = PyLong_AsSsize_t(PyTuple_GET_ITEM(where, 1));
        if (group < 0 || group >= RULE_GROUPS) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "rule group out of range");
            }
            return CONV_ERROR;
        }
        if (best[group] == NULL || rank < best_rank[group]) {
            best[group] = value;
            best_rank[group] = rank;
        }
        seen[group]++;
    }
    if (best[G_INPUT_COST] || best[G_OUTPUT_COST] || best[G_TOTAL_COST]) {
        return CONV_UNSURE;
    }
    /* (The AI SDK key, present with value None, is still an AI SDK span to Python: fall back.) */
    if ((rc = PyDict_Contains(attrs, self->ai_sdk_key)) != 0) {
        return rc < 0 ? CONV_ERROR : CONV_UNSURE;
    }
    if (best[G_PROVIDER] && (rc = rules_provider(self, best[G_PROVIDER], &f->obj[F_PROVIDER])) < 0) {
        goto fail;
    }
    if (f->obj[F_PROVIDER] != NULL && PyUnicode_Compare(f->obj[F_PROVIDER], self->openai) == 0) {
        if ((rc = rules_is_azure(self, attrs)) < 0) {
            goto fail;
        }
        if (rc == 1) {
            Py_SETREF(f->obj[F_PROVIDER], Py_NewRef(self->azure_openai));
        }
    }
    if (best[G_REQUEST_MODEL] && (rc = rules_as_text(self, best[G_REQUEST_MODEL], &f->obj[F_REQUEST_MODEL])) < 0) {
        goto fail;
    }
    if (f->obj[F_REQUEST_MODEL] == NULL && (rc = PyDict_Contains(attrs, self->invocation_key)) != 0) {
        rc = rc < 0 ? CONV_ERROR : CONV_UNSURE; /* genai.invocation_model: JSON, Python's */
        goto fail;
    }
    if (best[G_RESPONSE_MODEL] &&
        (rc = rules_as_text(self, best[G_RESPONSE_MODEL], &f->obj[F_RESPONSE_MODEL])) < 0) {
        goto fail;
    }
    if ((rc = rules_operation(self, attrs, &f->obj[F_OPERATION])) < 0) {
        goto fail;
    }
    int64_t input = 0, output = 0, total = 0, cache_read = 0, cache_creation = 0, reasoning = 0;
    int has_input, has_output, has_total = 0, has_read = 0, has_creation = 0, has_reasoning = 0;
    if ((rc = has_input = rules_count(self, attrs, best, seen, G_INPUT, &input)) < 0 ||
        (rc = has_output = rules_count(self, attrs, best, seen, G_OUTPUT, &output)) < 0 ||
        (rc = has_read = rules_count(self, attrs, best, seen, G_CACHE_READ, &cache_read)) < 0 ||
        (rc = has_creation = rules_count(self, attrs, best, seen, G_CACHE_CREATION, &cache_creation)) < 0 ||
        (rc = has_total = rules_count(self, attrs, best, seen, G_TOTAL, &total)) < 0 ||
        (rc = has_reasoning = rules_count(self, attrs, best, seen, G_REASONING, &reasoning)) < 0) {
        goto fail;
    }
    if (((has_read && cache_read) || (has_creation && cache_creation)) && has_input) {
        int64_t cached = (has_read ? cache_read : 0) + (has_creation ? cache_creation : 0);
        int excludes = cached > input;
        if (!excludes && scope_name != Py_None && PyUnicode_GET_LENGTH(scope_name) > 0) {
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(self->input_excludes) && !excludes; k++) {
                PyObject *pair = PyTuple_GET_ITEM(self->input_excludes, k);
                int starts = prefix_of(scope_name, PyTuple_GET_ITEM(pair, 0));
                if (starts < 0) {
                    rc = CONV_ERROR;
                    goto fail;
                }
                if (!starts) {
                    continue;
                }
                PyObject *providers = PyTuple_GET_ITEM(pair, 1);
                if (PySet_GET_SIZE(providers) == 0) {
                    excludes = 1;
                }
                else {
                    int in = PySet_Contains(providers, f->obj[F_PROVIDER] ? f->obj[F_PROVIDER] : Py_None);
                    if (in < 0) {
                        rc = CONV_ERROR;
                        goto fail;
                    }
                    excludes = in;
                }
            }
        }
        if (excludes) {
            input += cached;
        }
    }
    if (has_input || has_output) {
        int64_t summed = (has_input ? input : 0) + (has_output ? output : 0);
        if (!has_total || total < summed) {
            total = summed;
            has_total = 1;
        }
    }
    if (has_reasoning && has_output && reasoning && scope_name != Py_None) {
        int excludes = 0;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(self->output_excludes) && !excludes; k++) {
            excludes = prefix_of(scope_name, PyTuple_GET_ITEM(self->output_excludes, k));
            if (excludes < 0) {
                rc = CONV_ERROR;
                goto fail;
            }
        }
        if (excludes) {
            output += reasoning;
            int64_t both = (has_input ? input : 0) + output;
            if (!has_total || total < both) {
                total = both;
            }
            has_total = 1;
        }
    }
    f->count[F_INPUT] = input, f->has_count[F_INPUT] = has_input;
    f->count[F_OUTPUT] = output, f->has_count[F_OUTPUT] = has_output;
    f->count[F_TOTAL] = total, f->has_count[F_TOTAL] = has_total;
    f->count[F_CACHE_READ] = cache_read, f->has_count[F_CACHE_READ] = has_read;
    f->count[F_CACHE_CREATION] = cache_creation, f->has_count[F_CACHE_CREATION] = has_creation;
    f->count[F_REASONING] = reasoning, f->has_count[F_REASONING] = has_reasoning;
    for (int i = F_INPUT; i <= F_REASONING; i++) {
        if (f->has_count[i] && (f->obj[i] = PyLong_FromLongLong(f->count[i])) == NULL) {
            rc = CONV_ERROR;
            goto fail;
        }
    }
    if ((best[G_USER] && (rc = rules_as_key(self, best[G_USER], &f->obj[F_USER])) < 0) ||
        (best[G_SESSION] && (rc = rules_as_key(self, best[G_SESSION], &f->obj[F_SESSION])) < 0) ||
        (best[G_TAGS] && (rc = rules_as_text_list(self, best[G_TAGS], &f->obj[F_TAGS])) < 0) ||
        (best[G_FINISH] && (rc = rules_as_text_list(self, best[G_FINISH], &f->obj[F_FINISH])) < 0)) {
        goto fail;
    }
    return CONV_VALUE;
fail:
    fields_clear(f);
    return rc == CONV_ERROR || PyErr_Occurred() ? CONV_ERROR : CONV_UNSURE;
}

static PyObject *
field_or_none(PyObject *obj)
{
    return obj ? Py_NewRef(obj) : Py_NewRef(Py_None);
}

PyDoc_STRVAR(LlmRules_extract_doc,
             "extract(attrs, scope_name) -> tuple | None\n\n"
             "genai.extract_llm_fields(attrs, scope_name) without the costs, as (provider, request_model,\n"
             "response_model, operation, input_tokens, output_tokens, total_tokens, cache_read_tokens,\n"
             "cache_creation_tokens, reasoning_tokens, user_id, session_id, tags, finish_reasons); None\n"
             "when the span needs the Python rules (see the top of _genai_rules.c).");

static PyObject *
LlmRules_extract(LlmRules *self, PyObject *args)
{
    PyObject *attrs, *scope_name;
    if (!PyArg_ParseTuple(args, "O!O:extract", &PyDict_Type, &attrs, &scope_name)) {
        return NULL;
    }
    if (self->rank == NULL) {
        PyErr_SetString(PyExc_TypeError, "LlmRules was not initialised");
        return NULL;
    }
    if (scope_name != Py_None && !PyUnicode_Check(scope_name)) {
        PyErr_SetString(PyExc_TypeError, "scope_name must be str or None");
        return NULL;
    }
    Fields f;
    int rc = rules_extract(self, attrs, scope_name, &f);
    if (rc == CONV_ERROR) {
        return NULL;
    }
    if (rc == CONV_UNSURE) {
        Py_RETURN_NONE;
    }
    PyObject *out = PyTuple_New(N_FIELDS);
    if (out == NULL) {
        fields_clear(&f);
        return NULL;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        PyTuple_SET_ITEM(out, i, field_or_none(f.obj[i]));
    }
    fields_clear(&f);
    return out;
}

/* Columns of an `llm_traces` row (receiver.schema; traces.span_row builds the same tuple). */
#define ROW_COLUMNS 39
#define SPAN_ITEMS 15 /* what the decoder returns per span: traces.span_row's arguments after context */

/* The environment column: as_text(first(attrs, ENVIRONMENT_KEYS)) or the resource's. */
static int
rules_environment(LlmRules *self, PyObject *attrs, PyObject *resource_environment, PyObject **out)
{
    *out = NULL;
    PyObject *environment = first(attrs, self->environment_keys);
    if (environment == NULL && PyErr_Occurred()) {
        return CONV_ERROR;
    }
    if (environment != NULL) {
        int rc = rules_as_text(self, environment, out);
        if (rc < 0) {
            return rc;
        }
    }
    if (*out == NULL) {
        *out = Py_NewRef(resource_environment);
    }
    return CONV_VALUE;
}

/*
 * Pricing without a Python call per span. `plan(provider, model, ts)` (PriceBook.plan) is asked once per
 * (provider, model, day) of a request, its answer kept in the request's `plans` dict:
 *   None   no price: the span is unpriced;
 *   False  a price that depends on the time of day or the call's size (tiers): price() prices each span;
 *   a tuple of the rates: (provider, input, output, cache_read, cache_write, reasoning, per_thousand
 *          requests, zero, million, thousand), with which plan_cost computes what pricing.compute_cost
 *          computes, by the same operations on the same objects in the same order (so the same Decimal
 *          digits and exponent, in the calling thread's decimal context, as Python's operators use).
 */
#define PLAN_ITEMS 10
enum { PLAN_PROVIDER, PLAN_INPUT, PLAN_OUTPUT, PLAN_CACHE_READ, PLAN_CACHE_WRITE, PLAN_REASONING,
       PLAN_PER_THOUSAND, PLAN_ZERO, PLAN_MILLION, PLAN_THOUSAND };

typedef struct {
    PyObject *price; /* price(provider, model, ts, input, output, cache_read, cache_creation, reasoning) */
    PyObject *plan;  /* plan(provider, model, ts), or NULL: price() for every span */
    PyObject *plans; /* (provider, model, yyyymmdd) -> plan's answer, for one request */
} Pricing;

/* *acc = *acc + x * rate, as Python's `acc += x * rate`; 0, or -1 with *acc its old value or NULL. */
static int
add_product(PyObject **acc, PyObject *x, PyObject *rate)
{
    PyObject *product = PyNumber_Multiply(x, rate);
    if (product == NULL) {
        return -1;
    }
    PyObject *sum = PyNumber_Add(*acc, product);
    Py_DECREF(product);
    Py_SETREF(*acc, sum);
    return sum == NULL ? -1 : 0;
}

/* (acc + units * rate) / million: a new reference, NULL on error; steals acc. */
static PyObject *
finish_part(PyObject *acc, PyObject *units, PyObject *rate, PyObject *million)
{
    if (add_product(&acc, units, rate) < 0) {
        Py_XDECREF(acc);
        return NULL;
    }
    PyObject *cost = PyNumber_TrueDivide(acc, million);
    Py_DECREF(acc);
    return cost;
}

/* 1 when x is true as Python's `if x:` tests it, 0 when not, -1 on error. */
static inline int
truthy(PyObject *x)
{
    return x == Py_None ? 0 : PyObject_IsTrue(x);
}

/* pricing.compute_cost's plain branch (no tiers) with a plan's rates: (input_cost, output_cost, total,
 * provider) or None, as price() returns it. counts: input, output, cache_read, cache_creation, reasoning. */
static PyObject *
plan_cost(PyObject *plan, PyObject *const counts[5])
{
    PyObject *const *rate = &PyTuple_GET_ITEM(plan, 0);
    PyObject *input = counts[0], *output = counts[1];
    if (input == Py_None && output == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *cache_read_rate = Py_None, *cache_write_rate = Py_None, *reasoning_rate = Py_None;
    int t;
    if ((t = truthy(counts[2])) < 0) {
        return NULL;
    }
    if (t) {
        cache_read_rate = rate[PLAN_CACHE_READ];
    }
    if ((t = truthy(counts[3])) < 0) {
        return NULL;
    }
    if (t) {
        cache_write_rate = rate[PLAN_CACHE_WRITE];
    }
    if ((t = truthy(counts[4])) < 0) {
        return NULL;
    }
    if (t) {
        reasoning_rate = rate[PLAN_REASONING];
    }
    PyObject *zero = rate[PLAN_ZERO], *million = rate[PLAN_MILLION];
    PyObject *input_cost = NULL, *output_cost = NULL, *total = NULL, *uncached = NULL, *result = NULL;
    PyObject *int_zero = NULL, *sum = NULL;
    if (input != Py_None) {
        uncached = Py_NewRef(input);
        input_cost = Py_NewRef(zero);
        if (cache_read_rate != Py_None || cache_write_rate != Py_None) {
            if ((int_zero = PyLong_FromLong(0)) == NULL) {
                goto done;
            }
            PyObject *read = cache_read_rate != Py_None ? counts[2] : int_zero;
            PyObject *write = cache_write_rate != Py_None ? counts[3] : int_zero;
            if ((sum = PyNumber_Add(read, write)) == NULL || (t = PyObject_RichCompareBool(sum, uncached, Py_LE)) < 0) {
                goto done;
            }
            if (t) {
                Py_SETREF(uncached, PyNumber_Subtract(uncached, sum));
                if (uncached == NULL) {
                    goto done;
                }
                if ((t = truthy(read)) < 0 || (t && add_product(&input_cost, read, cache_read_rate) < 0)) {
                    goto done;
                }
                if ((t = truthy(write)) < 0 || (t && add_product(&input_cost, write, cache_write_rate) < 0)) {
                    goto done;
                }
            }
        }
        input_cost = finish_part(input_cost, uncached, rate[PLAN_INPUT], million);
        if (input_cost == NULL) {
            goto done;
        }
    }
    if (output != Py_None) {
        PyObject *plain = Py_NewRef(output);
        output_cost = Py_NewRef(zero);
        if (reasoning_rate != Py_None) {
            if ((t = PyObject_RichCompareBool(counts[4], plain, Py_LE)) < 0) {
                Py_DECREF(plain);
                goto done;
            }
            if (t) {
                Py_SETREF(plain, PyNumber_Subtract(plain, counts[4]));
                if (plain == NULL || add_product(&output_cost, counts[4], reasoning_rate) < 0) {
                    Py_XDECREF(plain);
                    goto done;
                }
            }
        }
        output_cost = finish_part(output_cost, plain, rate[PLAN_OUTPUT], million);
        Py_DECREF(plain);
        if (output_cost == NULL) {
            goto done;
        }
    }
    /* total = (input_cost or Decimal(0)) + (output_cost or Decimal(0)) */
    int in_true, out_true;
    if ((in_true = truthy(input_cost ? input_cost : Py_None)) < 0 ||
        (out_true = truthy(output_cost ? output_cost : Py_None)) < 0) {
        goto done;
    }
    if ((total = PyNumber_Add(in_true ? input_cost : zero, out_true ? output_cost : zero)) == NULL) {
        goto done;
    }
    if ((t = truthy(rate[PLAN_PER_THOUSAND])) < 0) {
        goto done;
    }
    if (t) {
        PyObject *fee = PyNumber_TrueDivide(rate[PLAN_PER_THOUSAND], rate[PLAN_THOUSAND]);
        if (fee == NULL) {
            goto done;
        }
        Py_SETREF(total, PyNumber_Add(total, fee));
        Py_DECREF(fee);
        if (total == NULL) {
            goto done;
        }
    }
    result = PyTuple_Pack(4, input_cost ? input_cost : Py_None, output_cost ? output_cost : Py_None, total,
                          rate[PLAN_PROVIDER]);
done:
    Py_XDECREF(input_cost);
    Py_XDECREF(output_cost);
    Py_XDECREF(total);
    Py_XDECREF(uncached);
    Py_XDECREF(int_zero);
    Py_XDECREF(sum);
    return result;
}

/* What a span costs: call = (provider, model, ts, input, output, cache_read, cache_creation, reasoning),
 * as price() takes them. A new reference (None or price()'s 4-tuple), NULL on error. */
static PyObject *
rules_price(Pricing *pricing, PyObject *const call[8])
{
    PyObject *ts = call[2];
    if (pricing->plan == NULL || !PyDateTime_Check(ts)) {
        return PyObject_Vectorcall(pricing->price, call, 8, NULL);
    }
    long day = PyDateTime_GET_YEAR(ts) * 10000L + PyDateTime_GET_MONTH(ts) * 100L + PyDateTime_GET_DAY(ts);
    PyObject *day_obj = PyLong_FromLong(day);
    if (day_obj == NULL) {
        return NULL;
    }
    PyObject *key = PyTuple_Pack(3, call[0], call[1], day_obj);
    Py_DECREF(day_obj);
    if (key == NULL) {
        return NULL;
    }
    PyObject *plan = PyDict_GetItemWithError(pricing->plans, key); /* borrowed */
    if (plan == NULL) {
        if (PyErr_Occurred() || (plan = PyObject_Vectorcall(pricing->plan, call, 3, NULL)) == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        int stored = PyDict_SetItem(pricing->plans, key, plan);
        Py_DECREF(plan); /* the dict holds it */
        if (stored < 0) {
            Py_DECREF(key);
            return NULL;
        }
    }
    Py_DECREF(key);
    if (plan == Py_None) {
        Py_RETURN_NONE;
    }
    if (plan == Py_False) {
        return PyObject_Vectorcall(pricing->price, call, 8, NULL);
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != PLAN_ITEMS) {
        PyErr_Format(PyExc_TypeError, "plan() must return None, False or a %d-tuple", PLAN_ITEMS);
        return NULL;
    }
    return plan_cost(plan, call + 3);
}

/*
 * One span row as traces.span_row makes it, when the rules are certain; else fallback(span). Costs
 * come from `price` (called only for spans that used tokens and name a model):
 * price(provider, model, ts, input, output, cache_read, cache_creation, reasoning) -> None (unpriced)
 * or (input_cost, output_cost, total_cost, provider).
 */
static PyObject *
rules_row(LlmRules *self, PyObject *context, PyObject *span, Pricing *pricing, PyObject *fallback)
{
    PyObject *attrs = PyTuple_GET_ITEM(span, 0);
    PyObject *scope_name = PyTuple_GET_ITEM(context, 1);
    Fields f;
    int rc;
    if (PyDict_GET_SIZE(attrs) == 0) {
        memset(&f, 0, sizeof(f));
        rc = CONV_VALUE;
    }
    else {
        rc = rules_extract(self, attrs, scope_name, &f);
    }
    if (rc == CONV_ERROR) {
        return NULL;
    }
    if (rc == CONV_UNSURE) {
        return PyObject_CallOneArg(fallback, span);
    }
    PyObject *environment = NULL, *priced = NULL, *row = NULL;
    rc = rules_environment(self, attrs, PyTuple_GET_ITEM(context, 4), &environment);
    if (rc == CONV_UNSURE) {
        fields_clear(&f);
        return PyObject_CallOneArg(fallback, span);
    }
    if (rc < 0) {
        goto done;
    }
    PyObject *model = f.obj[F_RESPONSE_MODEL] ? f.obj[F_RESPONSE_MODEL] : f.obj[F_REQUEST_MODEL];
    PyObject *provider = f.obj[F_PROVIDER] ? f.obj[F_PROVIDER] : Py_None;
    PyObject *costs[3] = {Py_None, Py_None, Py_None};
    PyObject *cost_source = Py_None;
    int used_tokens = (f.has_count[F_INPUT] && f.count[F_INPUT]) || (f.has_count[F_OUTPUT] && f.count[F_OUTPUT]);
    if (used_tokens) {
        cost_source = self->unpriced;
        if (model != NULL) {
            static const int counts[5] = {F_INPUT, F_OUTPUT, F_CACHE_READ, F_CACHE_CREATION, F_REASONING};
            PyObject *call[8] = {provider, model, PyTuple_GET_ITEM(span, 1)};
            for (int i = 0; i < 5; i++) {
                PyObject *c = f.obj[counts[i]];
                call[3 + i] = c ? c : Py_None;
            }
            priced = rules_price(pricing, call);
            if (priced == NULL) {
                goto done;
            }
            if (priced != Py_None) {
                if (!PyTuple_CheckExact(priced) || PyTuple_GET_SIZE(priced) != 4) {
                    PyErr_SetString(PyExc_TypeError, "price() must return None or a 4-tuple");
                    goto done;
                }
                costs[0] = PyTuple_GET_ITEM(priced, 0);
                costs[1] = PyTuple_GET_ITEM(priced, 1);
                costs[2] = PyTuple_GET_ITEM(priced, 2);
                provider = PyTuple_GET_ITEM(priced, 3);
                cost_source = self->pricing;
            }
        }
    }
    row = PyTuple_New(ROW_COLUMNS);
    if (row == NULL) {
        goto done;
    }
    PyObject *items[ROW_COLUMNS] = {
        PyTuple_GET_ITEM(span, 1),    /* ts */
        PyTuple_GET_ITEM(span, 2),    /* end_ts */
        PyTuple_GET_ITEM(span, 3),    /* trace_id */
        PyTuple_GET_ITEM(span, 4),    /* span_id */
        PyTuple_GET_ITEM(span, 5),    /* parent_span_id */
        PyTuple_GET_ITEM(span, 6),    /* name */
        PyTuple_GET_ITEM(span, 7),    /* kind */
        PyTuple_GET_ITEM(context, 0), /* service_name */
        scope_name,
        PyTuple_GET_ITEM(context, 2), /* scope_version */
        provider,
        model ? model : Py_None,
        f.obj[F_REQUEST_MODEL],
        f.obj[F_RESPONSE_MODEL],
        f.obj[F_OPERATION],
        f.obj[F_INPUT],
        f.obj[F_OUTPUT],
        f.obj[F_TOTAL],
        f.obj[F_CACHE_READ],
        f.obj[F_CACHE_CREATION],
        f.obj[F_REASONING],
        costs[0],
        costs[1],
        costs[2],
        cost_source,
        PyTuple_GET_ITEM(span, 8),  /* duration_ms */
        PyTuple_GET_ITEM(span, 9),  /* status_code */
        PyTuple_GET_ITEM(span, 10), /* status_message */
        f.obj[F_USER],
        f.obj[F_SESSION],
        environment,
        f.obj[F_TAGS],
        f.obj[F_FINISH],
        PyTuple_GET_ITEM(span, 11), /* trace_state */
        PyTuple_GET_ITEM(span, 12), /* attributes_json */
        PyTuple_GET_ITEM(context, 3), /* resource_json */
        PyTuple_GET_ITEM(span, 13), /* events_json */
        PyTuple_GET_ITEM(span, 14), /* links_json */
        PyTuple_GET_ITEM(context, 5), /* project_id */
    };
    int atoms_only = 1;
    for (int i = 0; i < ROW_COLUMNS; i++) {
        PyObject *item = field_or_none(items[i]);
        atoms_only &= !PyObject_IS_GC(item) || !PyObject_GC_IsTracked(item);
        PyTuple_SET_ITEM(row, i, item);
    }
    if (atoms_only) {
        PyObject_GC_UnTrack(row); /* as pgvalues.untrack_rows would, at once */
    }
done:
    Py_XDECREF(environment);
    Py_XDECREF(priced);
    fields_clear(&f);
    return row;
}

PyDoc_STRVAR(LlmRules_span_rows_doc,
             "span_rows(context, spans, rows, price, fallback, plan=None, plans=None) -> None\n\n"
             "Appends to `rows` the `llm_traces` row of every span tuple in `spans` (as TraceDecoder.decode\n"
             "returns them), as traces.span_row makes it. context: (service_name, scope_name, scope_version,\n"
             "resource_json, resource_environment, project_id). price(provider, model, ts, input, output,\n"
             "cache_read, cache_creation, reasoning) -> None or (input_cost, output_cost, total_cost,\n"
             "provider) for spans that used tokens and name a model; fallback(span) -> the row, for spans\n"
             "the native rules leave to Python. With plan(provider, model, ts) -> None, False or the rates (see\n"
             "PriceBook.plan), price() is called only for prices plan leaves to it; plans: a dict that keeps\n"
             "plan's answers (one per request).");

static PyObject *
LlmRules_span_rows(LlmRules *self, PyObject *args)
{
    PyObject *context, *spans, *rows, *price, *fallback, *plan = Py_None, *plans = Py_None;
    if (!PyArg_ParseTuple(args, "O!O!O!OO|OO:span_rows", &PyTuple_Type, &context, &PyList_Type, &spans, &PyList_Type,
                          &rows, &price, &fallback, &plan, &plans)) {
        return NULL;
    }
    Pricing pricing = {price, plan == Py_None ? NULL : plan, plans};
    if (pricing.plan != NULL && !PyDict_CheckExact(plans)) {
        PyErr_SetString(PyExc_TypeError, "span_rows: plans must be a dict when plan is given");
        return NULL;
    }
    if (self->rank == NULL) {
        PyErr_SetString(PyExc_TypeError, "LlmRules was not initialised");
        return NULL;
    }
    PyObject *scope_name = PyTuple_GET_SIZE(context) == 6 ? PyTuple_GET_ITEM(context, 1) : NULL;
    if (scope_name == NULL || (scope_name != Py_None && !PyUnicode_Check(scope_name))) {
        PyErr_SetString(PyExc_TypeError, "context must be a 6-tuple whose second item is str or None");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(spans); i++) {
        PyObject *span = PyList_GET_ITEM(spans, i);
        if (!PyTuple_CheckExact(span) || PyTuple_GET_SIZE(span) != SPAN_ITEMS ||
            !PyDict_CheckExact(PyTuple_GET_ITEM(span, 0))) {
            PyErr_SetString(PyExc_TypeError, "spans must hold the decoder's span tuples");
            return NULL;
        }
        Py_INCREF(span); /* the list may change under a Python callback */
        PyObject *row = rules_row(self, context, span, &pricing, fallback);
        Py_DECREF(span);
        if (row == NULL) {
            return NULL;
        }
        int added = PyList_Append(rows, row);
        Py_DECREF(row);
        if (added < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* Every object an LlmRules holds, for traverse and clear. */
#define LLM_RULES_SLOTS(X)                                                                                      \
    X(rank) X(groups) X(aliases) X(not_providers) X(azure_suffixes) X(azure_host_keys) X(azure_version_key)   \
        X(operation_keys) X(request_type_key) X(request_types) X(openinference_key) X(openinference_kinds)     \
            X(traceloop_key) X(traceloop_kinds) X(ai_sdk_key) X(invocation_key) X(input_excludes)             \
                X(output_excludes) X(environment_keys) X(openai) X(azure_openai) X(true_str) X(false_str)     \
                    X(unpriced) X(pricing) X(providers)

static int
LlmRules_init(LlmRules *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"rank",
                            "groups",
                            "aliases",
                            "not_providers",
                            "azure_suffixes",
                            "azure_host_keys",
                            "azure_version_key",
                            "operation_keys",
                            "request_type_key",
                            "request_types",
                            "openinference_key",
                            "openinference_kinds",
                            "traceloop_key",
                            "traceloop_kinds",
                            "ai_sdk_key",
                            "invocation_key",
                            "input_excludes",
                            "output_excludes",
                            "environment_keys",
                            NULL};
    PyObject *rank, *groups, *aliases, *not_providers, *azure_suffixes, *azure_host_keys, *azure_version_key,
        *operation_keys, *request_type_key, *request_types, *openinference_key, *openinference_kinds,
        *traceloop_key, *traceloop_kinds, *ai_sdk_key, *invocation_key, *input_excludes, *output_excludes,
        *environment_keys;
    if (self->groups != NULL) {
        PyErr_SetString(PyExc_TypeError, "LlmRules is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O!O!O!O!O!O!UO!UO!UO!UO!UUO!O!O!:LlmRules", names, &PyDict_Type, &rank, &PyTuple_Type,
            &groups, &PyDict_Type, &aliases, &PyFrozenSet_Type, &not_providers, &PyTuple_Type, &azure_suffixes,
            &PyTuple_Type, &azure_host_keys, &azure_version_key, &PyTuple_Type, &operation_keys, &request_type_key,
            &PyDict_Type, &request_types, &openinference_key, &PyDict_Type, &openinference_kinds, &traceloop_key,
            &PyDict_Type, &traceloop_kinds, &ai_sdk_key, &invocation_key, &PyTuple_Type, &input_excludes,
            &PyTuple_Type, &output_excludes, &PyTuple_Type, &environment_keys)) {
        return -1;
    }
    if (PyTuple_GET_SIZE(groups) != RULE_GROUPS) {
        PyErr_Format(PyExc_ValueError, "groups must hold %d key groups, in genai._GROUPS order", RULE_GROUPS);
        return -1;
    }
    for (Py_ssize_t g = 0; g < RULE_GROUPS; g++) {
        if (!PyTuple_Check(PyTuple_GET_ITEM(groups, g))) {
            PyErr_SetString(PyExc_TypeError, "every group must be a tuple of keys");
            return -1;
        }
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(rank, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || !PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != 2 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(v, 0)) || !PyLong_CheckExact(PyTuple_GET_ITEM(v, 1))) {
            PyErr_SetString(PyExc_TypeError, "rank must map str keys to (group, rank) int pairs");
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(azure_suffixes); i++) {
        PyObject *s = PyTuple_GET_ITEM(azure_suffixes, i);
        if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s)) {
            PyErr_SetString(PyExc_TypeError, "azure_suffixes must be ASCII str (lower case)");
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(input_excludes); i++) {
        PyObject *pair = PyTuple_GET_ITEM(input_excludes, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) || !PyFrozenSet_CheckExact(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "input_excludes must hold (prefix, frozenset) pairs");
            return -1;
        }
    }
    PyObject **tuples[] = {&azure_host_keys, &operation_keys, &output_excludes, &environment_keys};
    for (size_t t = 0; t < sizeof(tuples) / sizeof(tuples[0]); t++) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(*tuples[t]); i++) {
            if (!PyUnicode_Check(PyTuple_GET_ITEM(*tuples[t], i))) {
                PyErr_SetString(PyExc_TypeError, "key and prefix tuples must hold str");
                return -1;
            }
        }
    }
    self->groups = Py_NewRef(groups);
    for (int g = 0; g < RULE_GROUPS; g++) {
        self->group_keys[g] = PyTuple_GET_ITEM(groups, g);
    }
    self->aliases = Py_NewRef(aliases);
    self->not_providers = Py_NewRef(not_providers);
    self->azure_suffixes = Py_NewRef(azure_suffixes);
    self->azure_host_keys = Py_NewRef(azure_host_keys);
    self->azure_version_key = Py_NewRef(azure_version_key);
    self->operation_keys = Py_NewRef(operation_keys);
    self->request_type_key = Py_NewRef(request_type_key);
    self->request_types = Py_NewRef(request_types);
    self->openinference_key = Py_NewRef(openinference_key);
    self->openinference_kinds = Py_NewRef(openinference_kinds);
    self->traceloop_key = Py_NewRef(traceloop_key);
    self->traceloop_kinds = Py_NewRef(traceloop_kinds);
    self->ai_sdk_key = Py_NewRef(ai_sdk_key);
    self->invocation_key = Py_NewRef(invocation_key);
    self->input_excludes = Py_NewRef(input_excludes);
    self->output_excludes = Py_NewRef(output_excludes);
    self->environment_keys = Py_NewRef(environment_keys);
    self->openai = PyUnicode_InternFromString("openai");
    self->azure_openai = PyUnicode_InternFromString("azure.ai.openai");
    self->true_str = PyUnicode_InternFromString("true");
    self->false_str = PyUnicode_InternFromString("false");
    self->unpriced = PyUnicode_InternFromString("unpriced");
    self->pricing = PyUnicode_InternFromString("pricing");
    self->providers = PyDict_New();
    if (!self->openai || !self->azure_openai || !self->true_str || !self->false_str || !self->unpriced ||
        !self->pricing || !self->providers) {
        return -1;
    }
    self->rank = Py_NewRef(rank); /* last: marks the object initialised */
    return 0;
}

static int
LlmRules_traverse(LlmRules *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
#define VISIT_SLOT(name) Py_VISIT(self->name);
    LLM_RULES_SLOTS(VISIT_SLOT)
#undef VISIT_SLOT
    return 0;
}

static int
LlmRules_clear(LlmRules *self)
{
#define CLEAR_SLOT(name) Py_CLEAR(self->name);
    LLM_RULES_SLOTS(CLEAR_SLOT)
#undef CLEAR_SLOT
    for (int g = 0; g < RULE_GROUPS; g++) {
        self->group_keys[g] = NULL;
    }
    return 0;
}

static void
LlmRules_dealloc(LlmRules *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    LlmRules_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef LlmRules_methods[] = {
    {"extract", (PyCFunction)LlmRules_extract, METH_VARARGS, LlmRules_extract_doc},
    {"span_rows", (PyCFunction)LlmRules_span_rows, METH_VARARGS, LlmRules_span_rows_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(LlmRules_doc,
             "LlmRules(rank, groups, aliases, not_providers, azure_suffixes, azure_host_keys, azure_version_key,\n"
             "         operation_keys, request_type_key, request_types, openinference_key, openinference_kinds,\n"
             "         traceloop_key, traceloop_kinds, ai_sdk_key, invocation_key, input_excludes,\n"
             "         output_excludes, environment_keys)\n\n"
             "genai.py's rule tables, executed natively (see receiver/convert/traces_bytes.py, native_rules).");

static PyType_Slot LlmRules_slots[] = {
    {Py_tp_doc, (void *)LlmRules_doc},
    {Py_tp_init, LlmRules_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, LlmRules_dealloc},
    {Py_tp_traverse, LlmRules_traverse},
    {Py_tp_clear, LlmRules_clear},
    {Py_tp_methods, LlmRules_methods},
    {0, NULL},
};

static PyType_Spec LlmRules_spec = {
    .name = "receiver.convert._fastotlp.LlmRules",
    .basicsize = sizeof(LlmRules),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = LlmRules_slots,
};
