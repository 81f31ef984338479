/* Kafka records as Arrow column buffers, a consume call at a time, with no Python object per record.
 *
 * The drain's reading loop with confluent-kafka makes a Python Message per record and calls it
 * three to five times: that alone caps a drain at about a fifth of what librdkafka delivers. This
 * module uses the same librdkafka (the one confluent-kafka's wheel carries, loaded by path at run
 * time, so there is no second copy to build or keep in step) and copies a consume call's records
 * straight into the buffers of Arrow arrays, split by partition. It reads only: planning,
 * watermarks and offset commits stay with confluent-kafka.
 *
 * The declarations below are the few parts of librdkafka's public API this module uses; they are
 * those of rdkafka.h 2.x, whose ABI librdkafka keeps stable within a major version. `load` returns
 * the library's version (rd_kafka_version()) so that the caller refuses another major one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef struct rd_kafka_topic_partition_list_s rd_kafka_topic_partition_list_t;
typedef struct rd_kafka_message_s {
    int err;
    void *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

#define RD_KAFKA_CONSUMER 1
#define RD_KAFKA_CONF_OK 0

static struct {
    rd_kafka_conf_t *(*conf_new)(void);
    int (*conf_set)(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
    void (*conf_destroy)(rd_kafka_conf_t *);
    void (*conf_set_log_cb)(rd_kafka_conf_t *, void (*)(const rd_kafka_t *, int, const char *, const char *));
    void (*conf_set_opaque)(rd_kafka_conf_t *, void *);
    void *(*opaque)(const rd_kafka_t *);
    rd_kafka_t *(*new_)(int, rd_kafka_conf_t *, char *, size_t);
    int (*poll_set_consumer)(rd_kafka_t *);
    rd_kafka_queue_t *(*queue_get_consumer)(rd_kafka_t *);
    void (*queue_destroy)(rd_kafka_queue_t *);
    rd_kafka_topic_partition_list_t *(*list_new)(int);
    void *(*list_add)(rd_kafka_topic_partition_list_t *, const char *, int32_t);
    int (*list_set_offset)(rd_kafka_topic_partition_list_t *, const char *, int32_t, int64_t);
    void (*list_destroy)(rd_kafka_topic_partition_list_t *);
    int (*assign)(rd_kafka_t *, rd_kafka_topic_partition_list_t *);  /* const in rdkafka.h */
    int (*pause_partitions)(rd_kafka_t *, rd_kafka_topic_partition_list_t *);
    Py_ssize_t (*consume_batch_queue)(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
    rd_kafka_message_t *(*consume_queue)(rd_kafka_queue_t *, int);
    void (*message_destroy)(rd_kafka_message_t *);
    int64_t (*message_timestamp)(const rd_kafka_message_t *, int *);
    int (*message_headers)(const rd_kafka_message_t *, rd_kafka_headers_t **);
    size_t (*header_cnt)(const rd_kafka_headers_t *);
    int (*header_get_all)(const rd_kafka_headers_t *, size_t, const char **, const void **, size_t *);
    const char *(*err2str)(int);
    int (*last_error)(void);
    int (*consumer_close)(rd_kafka_t *);
    void (*destroy)(rd_kafka_t *);
    int (*version)(void);
} rk;

static void *library = NULL;

static PyObject *load(PyObject *module, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL)
        return NULL;
    if (library != NULL)
        return PyLong_FromLong(rk.version());
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL)
        return PyErr_Format(PyExc_ImportError, "cannot load librdkafka from %s: %s", path, dlerror());
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&rk.conf_new, "rd_kafka_conf_new"},
        {(void **)&rk.conf_set, "rd_kafka_conf_set"},
        {(void **)&rk.conf_destroy, "rd_kafka_conf_destroy"},
        {(void **)&rk.conf_set_log_cb, "rd_kafka_conf_set_log_cb"},
        {(void **)&rk.conf_set_opaque, "rd_kafka_conf_set_opaque"},
        {(void **)&rk.opaque, "rd_kafka_opaque"},
        {(void **)&rk.new_, "rd_kafka_new"},
        {(void **)&rk.poll_set_consumer, "rd_kafka_poll_set_consumer"},
        {(void **)&rk.queue_get_consumer, "rd_kafka_queue_get_consumer"},
        {(void **)&rk.queue_destroy, "rd_kafka_queue_destroy"},
        {(void **)&rk.list_new, "rd_kafka_topic_partition_list_new"},
        {(void **)&rk.list_add, "rd_kafka_topic_partition_list_add"},
        {(void **)&rk.list_set_offset, "rd_kafka_topic_partition_list_set_offset"},
        {(void **)&rk.list_destroy, "rd_kafka_topic_partition_list_destroy"},
        {(void **)&rk.assign, "rd_kafka_assign"},
        {(void **)&rk.pause_partitions, "rd_kafka_pause_partitions"},
        {(void **)&rk.consume_batch_queue, "rd_kafka_consume_batch_queue"},
        {(void **)&rk.consume_queue, "rd_kafka_consume_queue"},
        {(void **)&rk.message_destroy, "rd_kafka_message_destroy"},
        {(void **)&rk.message_timestamp, "rd_kafka_message_timestamp"},
        {(void **)&rk.message_headers, "rd_kafka_message_headers"},
        {(void **)&rk.header_cnt, "rd_kafka_header_cnt"},
        {(void **)&rk.header_get_all, "rd_kafka_header_get_all"},
        {(void **)&rk.err2str, "rd_kafka_err2str"},
        {(void **)&rk.last_error, "rd_kafka_last_error"},
        {(void **)&rk.consumer_close, "rd_kafka_consumer_close"},
        {(void **)&rk.destroy, "rd_kafka_destroy"},
        {(void **)&rk.version, "rd_kafka_version"},
    };
    for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        *symbols[i].slot = dlsym(handle, symbols[i].name);
        if (*symbols[i].slot == NULL) {
            dlclose(handle);
            return PyErr_Format(PyExc_ImportError, "%s lacks %s", path, symbols[i].name);
        }
    }
    library = handle;
    return PyLong_FromLong(rk.version());
}

typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    PyObject *log;  /* callable(level, facility, message), or NULL */
} Reader;

/* Called on librdkafka's own threads: take the GIL to hand the line to Python's logging. Every
 * call into librdkafka that may wait for those threads releases the GIL, so this cannot deadlock. */
static void log_line(const rd_kafka_t *handle, int level, const char *facility, const char *message) {
    Reader *self = (Reader *)rk.opaque(handle);
    if (self == NULL || self->log == NULL || !Py_IsInitialized())
        return;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *result = PyObject_CallFunction(self->log, "iss", level, facility, message);
    if (result == NULL)
        PyErr_WriteUnraisable(self->log);
    Py_XDECREF(result);
    PyGILState_Release(gil);
}

static void reader_shut(Reader *self) {
    rd_kafka_t *handle = self->rk;
    rd_kafka_queue_t *queue = self->queue;
    self->rk = NULL;
    self->queue = NULL;
    if (handle == NULL)
        return;
    Py_BEGIN_ALLOW_THREADS
    if (queue != NULL)
        rk.queue_destroy(queue);
    rk.consumer_close(handle);
    rk.destroy(handle);
    Py_END_ALLOW_THREADS
}

static int reader_init(Reader *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"config", "log", NULL};
    PyObject *config, *log = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|O", names, &PyDict_Type, &config, &log))
        return -1;
    if (library == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "librdkafka is not loaded: call load(path) first");
        return -1;
    }
    reader_shut(self);
    Py_CLEAR(self->log);
    if (log != Py_None) {
        Py_INCREF(log);
        self->log = log;
    }
    char error[512];
    rd_kafka_conf_t *conf = rk.conf_new();
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(config, &pos, &key, &value)) {
        const char *k = PyUnicode_AsUTF8(key), *v = PyUnicode_AsUTF8(value);
        if (k == NULL || v == NULL) {
            rk.conf_destroy(conf);
            return -1;
        }
        if (rk.conf_set(conf, k, v, error, sizeof(error)) != RD_KAFKA_CONF_OK) {
            rk.conf_destroy(conf);
            PyErr_Format(PyExc_ValueError, "%s", error);
            return -1;
        }
    }
    rk.conf_set_opaque(conf, self);
    rk.conf_set_log_cb(conf, log_line);
    rd_kafka_t *handle;
    Py_BEGIN_ALLOW_THREADS  /* its first log lines come from threads that need the GIL */
    handle = rk.new_(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
    Py_END_ALLOW_THREADS
    if (handle == NULL) {  /* rd_kafka_new keeps conf only when it succeeds */
        rk.conf_destroy(conf);
        PyErr_Format(PyExc_ValueError, "%s", error);
        return -1;
    }
    rk.poll_set_consumer(handle);
    self->rk = handle;
    self->queue = rk.queue_get_consumer(handle);
    if (self->queue == NULL) {
        reader_shut(self);
        PyErr_SetString(PyExc_ValueError, "a consumer needs a group.id");
        return -1;
    }
    return 0;
}

static void reader_dealloc(Reader *self) {
    reader_shut(self);
    Py_CLEAR(self->log);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_open(Reader *self) {
    if (self->rk == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is closed");
        return -1;
    }
    return 0;
}

/* A topic partition list from (topic, [(partition, offset), ...]); offset -1001 (RD_KAFKA_OFFSET_INVALID) to leave it unset. */
static rd_kafka_topic_partition_list_t *partition_list(const char *topic, PyObject *items) {
    PyObject *seq = PySequence_Fast(items, "expected a sequence of (partition, offset)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    rd_kafka_topic_partition_list_t *list = rk.list_new((int)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        int partition;
        long long offset;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iL", &partition, &offset)) {
            rk.list_destroy(list);
            Py_DECREF(seq);
            return NULL;
        }
        rk.list_add(list, topic, partition);
        rk.list_set_offset(list, topic, partition, offset);
    }
    Py_DECREF(seq);
    return list;
}

static PyObject *kafka_error(int err) {
    return PyErr_Format(PyExc_RuntimeError, "%s", rk.err2str(err));
}

/* Call `action` (assign, pause) with the (topic, [(partition, offset)]) of args, without the GIL. */
static PyObject *on_partitions(
    Reader *self, PyObject *args, int (*action)(rd_kafka_t *, rd_kafka_topic_partition_list_t *)) {
    const char *topic;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "sO", &topic, &items) || check_open(self) < 0)
        return NULL;
    rd_kafka_topic_partition_list_t *list = partition_list(topic, items);
    if (list == NULL)
        return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = action(self->rk, list);
    Py_END_ALLOW_THREADS
    rk.list_destroy(list);
    if (err)
        return kafka_error(err);
    Py_RETURN_NONE;
}

static PyObject *reader_assign(Reader *self, PyObject *args) {
    return on_partitions(self, args, rk.assign);
}

static PyObject *reader_pause(Reader *self, PyObject *args) {
    return on_partitions(self, args, rk.pause_partitions);
}

/* An Arrow binary column being built: int32 offsets, data and a validity bitmap, in bytes objects. */
typedef struct {
    Py_ssize_t bytes, nulls;
    PyObject *offsets, *data, *valid;
} Binary;

/* Allocate for `count` items of b->bytes bytes in all (counted beforehand); then set them in order. */
static int binary_allocate(Binary *b, Py_ssize_t count) {
    if (b->bytes > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "over 2 GiB of records in one consume call");
        return -1;
    }
    Py_ssize_t bitmap = (count + 7) / 8;
    b->offsets = PyBytes_FromStringAndSize(NULL, (count + 1) * 4);
    b->data = PyBytes_FromStringAndSize(NULL, b->bytes);
    b->valid = PyBytes_FromStringAndSize(NULL, bitmap);
    if (!b->offsets || !b->data || !b->valid)
        return -1;
    memset(PyBytes_AS_STRING(b->valid), 0, bitmap);
    ((int32_t *)PyBytes_AS_STRING(b->offsets))[0] = 0;
    b->bytes = b->nulls = 0;
    return 0;
}

/* Item j (set in order) is `size` bytes at `data`, or null. Touches only memory nothing else sees: no GIL needed. */
static void binary_set(Binary *b, Py_ssize_t j, const void *data, size_t size) {
    if (data) {
        memcpy(PyBytes_AS_STRING(b->data) + b->bytes, data, size);
        b->bytes += (Py_ssize_t)size;
        PyBytes_AS_STRING(b->valid)[j / 8] |= (char)(1 << (j % 8));
    } else {
        b->nulls++;
    }
    ((int32_t *)PyBytes_AS_STRING(b->offsets))[j + 1] = (int32_t)b->bytes;
}

static void binary_clear(Binary *b) {
    Py_CLEAR(b->offsets);
    Py_CLEAR(b->data);
    Py_CLEAR(b->valid);
}

/* One partition's records of a consume call, and their headers, as the buffers of Arrow arrays. */
typedef struct {
    int32_t partition;
    Py_ssize_t count, header_count;
    PyObject *offsets, *timestamps, *header_records;
    Binary keys, values, header_keys, header_values;
} Run;

static void run_clear(Run *run) {
    Py_CLEAR(run->offsets);
    Py_CLEAR(run->timestamps);
    Py_CLEAR(run->header_records);
    binary_clear(&run->keys);
    binary_clear(&run->values);
    binary_clear(&run->header_keys);
    binary_clear(&run->header_values);
}

static int run_allocate(Run *run) {
    run->offsets = PyBytes_FromStringAndSize(NULL, run->count * 8);
    run->timestamps = PyBytes_FromStringAndSize(NULL, run->count * 8);
    run->header_records = PyBytes_FromStringAndSize(NULL, run->header_count * 4);
    if (!run->offsets || !run->timestamps || !run->header_records)
        return -1;
    if (binary_allocate(&run->keys, run->count) < 0 || binary_allocate(&run->values, run->count) < 0 ||
        binary_allocate(&run->header_keys, run->header_count) < 0 ||
        binary_allocate(&run->header_values, run->header_count) < 0)
        return -1;
    run->count = run->header_count = 0;
    return 0;
}

/* consume(max_records, timeout_ms) -> (runs, events)
 *   runs: [(partition, count, offsets, timestamps, keys, values,
 *           header_count, header_records, header_keys, header_values)], in order of first record;
 *         offsets and timestamps are int64 buffers; keys, values, header_keys and header_values are
 *         binary columns (offsets, data, validity, null count); header_records (int32) says whose
 *         header each header row is, by position in the run
 *   events: [(partition, offset, error code, text)], e.g. the end of a partition (-191)
 */
static PyObject *reader_consume(Reader *self, PyObject *args) {
    int max_records, timeout_ms;
    if (!PyArg_ParseTuple(args, "ii", &max_records, &timeout_ms) || check_open(self) < 0)
        return NULL;
    if (max_records < 1)
        return PyErr_Format(PyExc_ValueError, "max_records must be positive");
    rd_kafka_message_t **messages = PyMem_RawMalloc(sizeof(*messages) * (size_t)max_records);
    int *run_of = PyMem_RawMalloc(sizeof(int) * (size_t)max_records);
    rd_kafka_headers_t **headers = PyMem_RawCalloc((size_t)max_records, sizeof(*headers));
    Run *runs = PyMem_RawCalloc((size_t)max_records, sizeof(Run));
    PyObject *result = NULL, *run_list = NULL, *events = NULL;
    Py_ssize_t n = 0, nruns = 0;
    if (!messages || !run_of || !headers || !runs) {
        PyErr_NoMemory();
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    /* What is queued now, else the first record to arrive within the timeout and what came with it.
     * (A batch call with a timeout waits for a full batch: the last, short one of a drain would
     * always cost the whole timeout.) */
    n = rk.consume_batch_queue(self->queue, 0, messages, (size_t)max_records);
    if (n == 0) {
        rd_kafka_message_t *first = rk.consume_queue(self->queue, timeout_ms);
        if (first != NULL) {
            messages[0] = first;
            n = rk.consume_batch_queue(self->queue, 0, messages + 1, (size_t)max_records - 1);
            n = n < 0 ? 1 : n + 1;
        }
    }
    /* Pass 1: which run each record belongs to (partitions are few), and the sizes of the buffers. */
    for (Py_ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = messages[i];
        if (m->err) {
            run_of[i] = -1;
            continue;
        }
        int r = 0;
        while (r < nruns && runs[r].partition != m->partition)
            r++;
        if (r == nruns)
            runs[nruns++].partition = m->partition;
        run_of[i] = r;
        Run *run = &runs[r];
        run->count++;
        run->keys.bytes += m->key ? (Py_ssize_t)m->key_len : 0;
        run->values.bytes += m->payload ? (Py_ssize_t)m->len : 0;
        if (rk.message_headers(m, &headers[i]) != 0) {
            headers[i] = NULL;
            continue;
        }
        size_t count = rk.header_cnt(headers[i]);
        for (size_t h = 0; h < count; h++) {
            const char *name;
            const void *value;
            size_t size;
            rk.header_get_all(headers[i], h, &name, &value, &size);
            run->header_count++;
            run->header_keys.bytes += (Py_ssize_t)strlen(name);
            run->header_values.bytes += value ? (Py_ssize_t)size : 0;
        }
    }
    Py_END_ALLOW_THREADS
    if (n < 0) {
        n = 0;
        kafka_error(rk.last_error());
        goto done;
    }
    for (Py_ssize_t r = 0; r < nruns; r++)
        if (run_allocate(&runs[r]) < 0)
            goto done;

    /* Pass 2: fill the buffers, which nothing else sees yet, without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (run_of[i] < 0)
            continue;
        rd_kafka_message_t *m = messages[i];
        Run *run = &runs[run_of[i]];
        Py_ssize_t j = run->count++;
        int kind;
        ((int64_t *)PyBytes_AS_STRING(run->offsets))[j] = m->offset;
        ((int64_t *)PyBytes_AS_STRING(run->timestamps))[j] = rk.message_timestamp(m, &kind);
        binary_set(&run->keys, j, m->key, m->key_len);
        binary_set(&run->values, j, m->payload, m->len);
        size_t count = headers[i] ? rk.header_cnt(headers[i]) : 0;
        for (size_t h = 0; h < count; h++) {
            const char *name;
            const void *value;
            size_t size;
            rk.header_get_all(headers[i], h, &name, &value, &size);
            Py_ssize_t k = run->header_count++;
            ((int32_t *)PyBytes_AS_STRING(run->header_records))[k] = (int32_t)j;
            binary_set(&run->header_keys, k, name, strlen(name));
            binary_set(&run->header_values, k, value, size);
        }
    }
    Py_END_ALLOW_THREADS

    /* Pass 3: the few Python objects: a tuple per run, and the events. */
    run_list = PyList_New(0);
    events = PyList_New(0);
    if (!run_list || !events)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = messages[i];
        if (run_of[i] >= 0)
            continue;
        PyObject *event = Py_BuildValue("(iLis)", m->partition, (long long)m->offset, m->err, rk.err2str(m->err));
        if (event == NULL || PyList_Append(events, event) < 0) {
            Py_XDECREF(event);
            goto done;
        }
        Py_DECREF(event);
    }
    for (Py_ssize_t r = 0; r < nruns; r++) {
        Run *run = &runs[r];
        Binary *b[] = {&run->keys, &run->values, &run->header_keys, &run->header_values};
        PyObject *item = Py_BuildValue(
            "(inOO(OOOn)(OOOn)nO(OOOn)(OOOn))", run->partition, run->count, run->offsets, run->timestamps,
            b[0]->offsets, b[0]->data, b[0]->valid, b[0]->nulls, b[1]->offsets, b[1]->data, b[1]->valid, b[1]->nulls,
            run->header_count, run->header_records, b[2]->offsets, b[2]->data, b[2]->valid, b[2]->nulls,
            b[3]->offsets, b[3]->data, b[3]->valid, b[3]->nulls);
        if (item == NULL || PyList_Append(run_list, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    result = PyTuple_Pack(2, run_list, events);

done:
    Py_XDECREF(run_list);
    Py_XDECREF(events);
    if (runs != NULL)
        for (Py_ssize_t r = 0; r < nruns; r++)
            run_clear(&runs[r]);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        rk.message_destroy(messages[i]);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(runs);
    PyMem_RawFree(messages);
    PyMem_RawFree(run_of);
    PyMem_RawFree(headers);
    return result;
}

static PyObject *reader_close(Reader *self, PyObject *Py_UNUSED(ignored)) {
    reader_shut(self);
    Py_RETURN_NONE;
}

static PyMethodDef reader_methods[] = {
    {"assign", (PyCFunction)reader_assign, METH_VARARGS, "assign(topic, [(partition, offset)]): read from these offsets"},
    {"pause", (PyCFunction)reader_pause, METH_VARARGS, "pause(topic, [(partition, -1001)]): stop fetching these"},
    {"consume", (PyCFunction)reader_consume, METH_VARARGS, "consume(max_records, timeout_ms) -> (runs, events)"},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "leave the cluster and free the client"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ingestion._rdkafka_batches.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(config: dict[str, str], log=None): a librdkafka consumer that reads records as column buffers",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
};

static PyMethodDef module_methods[] = {
    {"load", load, METH_O, "load(path) -> version: use the librdkafka shared library at path"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rdkafka_batches", "Kafka records as Arrow column buffers.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__rdkafka_batches(void) {
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
