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
 * those of rdkafka.h, whose ABI librdkafka keeps stable across releases.
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
} rk;

static void *library = NULL;

static PyObject *load(PyObject *module, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL)
        return NULL;
    if (library != NULL)
        Py_RETURN_NONE;
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
    };
    for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        *symbols[i].slot = dlsym(handle, symbols[i].name);
        if (*symbols[i].slot == NULL) {
            dlclose(handle);
            return PyErr_Format(PyExc_ImportError, "%s lacks %s", path, symbols[i].name);
        }
    }
    library = handle;
    Py_RETURN_NONE;
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

/* One partition's records of a consume call, as the buffers of Arrow arrays. */
typedef struct {
    int32_t partition;
    Py_ssize_t count, key_bytes, value_bytes, key_nulls, value_nulls, with_headers;
    PyObject *offsets, *timestamps, *key_offsets, *key_data, *key_valid, *value_offsets, *value_data, *value_valid;
} Run;

static void run_clear(Run *run) {
    Py_CLEAR(run->offsets);
    Py_CLEAR(run->timestamps);
    Py_CLEAR(run->key_offsets);
    Py_CLEAR(run->key_data);
    Py_CLEAR(run->key_valid);
    Py_CLEAR(run->value_offsets);
    Py_CLEAR(run->value_data);
    Py_CLEAR(run->value_valid);
}

static int run_allocate(Run *run) {
    Py_ssize_t n = run->count, bitmap = (n + 7) / 8;
    if (run->key_bytes > INT32_MAX || run->value_bytes > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "over 2 GiB of records in one consume call");
        return -1;
    }
    run->offsets = PyBytes_FromStringAndSize(NULL, n * 8);
    run->timestamps = PyBytes_FromStringAndSize(NULL, n * 8);
    run->key_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    run->key_data = PyBytes_FromStringAndSize(NULL, run->key_bytes);
    run->key_valid = PyBytes_FromStringAndSize(NULL, bitmap);
    run->value_offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    run->value_data = PyBytes_FromStringAndSize(NULL, run->value_bytes);
    run->value_valid = PyBytes_FromStringAndSize(NULL, bitmap);
    if (!run->offsets || !run->timestamps || !run->key_offsets || !run->key_data || !run->key_valid ||
        !run->value_offsets || !run->value_data || !run->value_valid)
        return -1;
    memset(PyBytes_AS_STRING(run->key_valid), 0, bitmap);
    memset(PyBytes_AS_STRING(run->value_valid), 0, bitmap);
    return 0;
}

/* consume(max_records, timeout_ms) -> (runs, events)
 *   runs: [(partition, count, offsets, timestamps, key_offsets, key_data, key_valid, key_nulls,
 *           value_offsets, value_data, value_valid, value_nulls, headers)], in order of first record
 *         headers: {index in run: [(name, value or None)]} for records that carry any
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
    Run *runs = NULL;
    PyObject *result = NULL, *run_list = NULL, *events = NULL;
    Py_ssize_t n = 0, nruns = 0;
    if (!messages || !run_of || !headers) {
        PyErr_NoMemory();
        goto done;
    }

    /* What is queued now, else the first record to arrive within the timeout and what came with it.
     * (A batch call with a timeout waits for a full batch: the last, short one of a drain would
     * always cost the whole timeout.) */
    Py_BEGIN_ALLOW_THREADS
    n = rk.consume_batch_queue(self->queue, 0, messages, (size_t)max_records);
    if (n == 0) {
        rd_kafka_message_t *first = rk.consume_queue(self->queue, timeout_ms);
        if (first != NULL) {
            messages[0] = first;
            n = rk.consume_batch_queue(self->queue, 0, messages + 1, (size_t)max_records - 1);
            n = n < 0 ? 1 : n + 1;
        }
    }
    Py_END_ALLOW_THREADS
    if (n < 0) {
        n = 0;
        kafka_error(rk.last_error());
        goto done;
    }

    /* Pass 1: which run each record belongs to, and the sizes of its buffers. Partitions are few. */
    runs = PyMem_RawCalloc((size_t)(n > 0 ? n : 1), sizeof(Run));
    if (runs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
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
        runs[r].count++;
        runs[r].key_bytes += m->key ? (Py_ssize_t)m->key_len : 0;
        runs[r].value_bytes += m->payload ? (Py_ssize_t)m->len : 0;
    }
    for (Py_ssize_t r = 0; r < nruns; r++)
        if (run_allocate(&runs[r]) < 0)
            goto done;

    /* Pass 2: fill the buffers, which nothing else sees yet, without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < nruns; r++) {
        runs[r].count = runs[r].key_bytes = runs[r].value_bytes = 0;
        ((int32_t *)PyBytes_AS_STRING(runs[r].key_offsets))[0] = 0;
        ((int32_t *)PyBytes_AS_STRING(runs[r].value_offsets))[0] = 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (run_of[i] < 0)
            continue;
        rd_kafka_message_t *m = messages[i];
        Run *run = &runs[run_of[i]];
        Py_ssize_t j = run->count++;
        int kind;
        ((int64_t *)PyBytes_AS_STRING(run->offsets))[j] = m->offset;
        ((int64_t *)PyBytes_AS_STRING(run->timestamps))[j] = rk.message_timestamp(m, &kind);
        if (m->key) {
            memcpy(PyBytes_AS_STRING(run->key_data) + run->key_bytes, m->key, m->key_len);
            run->key_bytes += (Py_ssize_t)m->key_len;
            PyBytes_AS_STRING(run->key_valid)[j / 8] |= (char)(1 << (j % 8));
        } else {
            run->key_nulls++;
        }
        ((int32_t *)PyBytes_AS_STRING(run->key_offsets))[j + 1] = (int32_t)run->key_bytes;
        if (m->payload) {
            memcpy(PyBytes_AS_STRING(run->value_data) + run->value_bytes, m->payload, m->len);
            run->value_bytes += (Py_ssize_t)m->len;
            PyBytes_AS_STRING(run->value_valid)[j / 8] |= (char)(1 << (j % 8));
        } else {
            run->value_nulls++;
        }
        ((int32_t *)PyBytes_AS_STRING(run->value_offsets))[j + 1] = (int32_t)run->value_bytes;
        if (rk.message_headers(m, &headers[i]) == 0 && rk.header_cnt(headers[i]) > 0)
            run->with_headers++;
        else
            headers[i] = NULL;
    }
    Py_END_ALLOW_THREADS

    /* Pass 3: the few Python objects: one tuple per run, headers where records carry them, events. */
    run_list = PyList_New(0);
    events = PyList_New(0);
    if (!run_list || !events)
        goto done;
    PyObject **header_maps = PyMem_RawCalloc((size_t)(nruns > 0 ? nruns : 1), sizeof(PyObject *));
    if (header_maps == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int failed = 0;
    for (Py_ssize_t r = 0; r < nruns && !failed; r++) {
        header_maps[r] = PyDict_New();
        failed = header_maps[r] == NULL;
        runs[r].count = 0;
    }
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        rd_kafka_message_t *m = messages[i];
        if (run_of[i] < 0) {
            PyObject *event = Py_BuildValue(
                "(iLis)", m->partition, (long long)m->offset, m->err, rk.err2str(m->err));
            failed = event == NULL || PyList_Append(events, event) < 0;
            Py_XDECREF(event);
            continue;
        }
        Py_ssize_t j = runs[run_of[i]].count++;
        if (headers[i] == NULL)
            continue;
        size_t count = rk.header_cnt(headers[i]);
        PyObject *pairs = PyList_New((Py_ssize_t)count);
        failed = pairs == NULL;
        for (size_t h = 0; h < count && !failed; h++) {
            const char *name;
            const void *value;
            size_t size;
            rk.header_get_all(headers[i], h, &name, &value, &size);
            PyObject *pair = value ? Py_BuildValue("(sy#)", name, (const char *)value, (Py_ssize_t)size)
                                   : Py_BuildValue("(sO)", name, Py_None);
            failed = pair == NULL;
            if (pair)
                PyList_SET_ITEM(pairs, (Py_ssize_t)h, pair);
        }
        if (!failed) {
            PyObject *index = PyLong_FromSsize_t(j);
            failed = index == NULL || PyDict_SetItem(header_maps[run_of[i]], index, pairs) < 0;
            Py_XDECREF(index);
        }
        Py_XDECREF(pairs);
    }
    for (Py_ssize_t r = 0; r < nruns && !failed; r++) {
        Run *run = &runs[r];
        PyObject *item = Py_BuildValue(
            "(inOOOOOnOOOnO)", run->partition, run->count, run->offsets, run->timestamps, run->key_offsets,
            run->key_data, run->key_valid, run->key_nulls, run->value_offsets, run->value_data, run->value_valid,
            run->value_nulls, header_maps[r]);
        failed = item == NULL || PyList_Append(run_list, item) < 0;
        Py_XDECREF(item);
    }
    for (Py_ssize_t r = 0; r < nruns; r++)
        Py_XDECREF(header_maps[r]);
    PyMem_RawFree(header_maps);
    if (!failed)
        result = PyTuple_Pack(2, run_list, events);

done:
    Py_XDECREF(run_list);
    Py_XDECREF(events);
    if (runs != NULL)
        for (Py_ssize_t r = 0; r < nruns; r++)
            run_clear(&runs[r]);
    PyMem_RawFree(runs);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        rk.message_destroy(messages[i]);
    Py_END_ALLOW_THREADS
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
    {"load", load, METH_O, "load(path): use the librdkafka shared library at path"},
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
