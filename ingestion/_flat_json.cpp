// The drain's fast JSON reader: flat JSON objects into Arrow column buffers, with simdjson.
//
// It reads only what it can read exactly as pyarrow's JSON reader would (the same columns, types
// and values), and gives up on anything else by returning None: a nested value, a type it does not
// know, a value that does not fit its column, a string pyarrow would take for a timestamp, a
// duplicate field, anything after the object. The caller then reads the batch with pyarrow, whose
// errors decide what is quarantined, so the records read and the reasons given never depend on
// which reader ran.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "_vendor/simdjson/simdjson.h"

namespace {

using simdjson::dom::element_type;

enum Kind : char { NONE = 'n', STRING = 's', INT64 = 'i', DOUBLE = 'd', BOOL = 'b' };

struct Column {
    std::string name;
    Kind kind;
    bool declared;
    int64_t rows = 0;  // rows with a slot so far, the last perhaps this record's
    std::vector<uint8_t> valid;  // a byte per row, packed into bits at the end
    std::vector<int32_t> offsets{0};
    std::string text;
    std::vector<int64_t> ints;
    std::vector<double> doubles;

    // Null slots up to `row`, so the next value lands in it.
    void pad_to(int64_t row) {
        if (rows >= row) return;
        if (kind != NONE) {
            valid.resize(row, 0);
            if (kind == STRING) offsets.resize(row + 1, static_cast<int32_t>(text.size()));
            else if (kind == DOUBLE) doubles.resize(row, 0.0);
            else ints.resize(row, 0);  // INT64 and BOOL
        }
        rows = row;
    }

    // Room for every row at once: growing a buffer row by row copies it over and over.
    void reserve(int64_t count) {
        valid.reserve(count);
        if (kind == STRING) offsets.reserve(count + 1);
        else if (kind == DOUBLE) doubles.reserve(count);
        else if (kind != NONE) ints.reserve(count);
    }

    // The column's first value decides an undeclared column's kind; the nulls before it take slots.
    void become(Kind k, int64_t count) {
        kind = k;
        reserve(count);
        int64_t before = rows;
        rows = 0;
        pad_to(before);
    }
};

// An ISO 8601 date at the start of a string: pyarrow infers such a column as a timestamp.
bool looks_like_a_date(std::string_view s) {
    auto digit = [&](size_t i) { return s[i] >= '0' && s[i] <= '9'; };
    return s.size() >= 10 && digit(0) && digit(1) && digit(2) && digit(3) && s[4] == '-' && digit(5) && digit(6) &&
           s[7] == '-' && digit(8) && digit(9);
}

struct Reader {
    std::vector<std::unique_ptr<Column>> columns;
    std::unordered_map<std::string_view, size_t> index;
    size_t max_columns;

    Column* column(std::string_view key, Kind kind, bool declared) {
        auto found = index.find(key);
        if (found != index.end()) return columns[found->second].get();
        if (columns.size() >= max_columns) return nullptr;
        auto c = std::make_unique<Column>();
        c->name = std::string(key);
        c->kind = kind;
        c->declared = declared;
        columns.push_back(std::move(c));
        index.emplace(std::string_view(columns.back()->name), columns.size() - 1);
        return columns.back().get();
    }

    // One field's value into its column at `row`; false where pyarrow might read it otherwise.
    bool take(Column* c, int64_t row, simdjson::dom::element value) {
        if (c->rows > row) return false;  // the field came twice in this record
        switch (value.type()) {
            case element_type::NULL_VALUE:
                c->pad_to(row + 1);
                return true;
            case element_type::STRING: {
                std::string_view s = value.get_string().value_unsafe();
                if (c->kind == NONE) c->become(STRING, count);
                if (c->kind != STRING || (!c->declared && looks_like_a_date(s))) return false;
                if (c->text.size() + s.size() > INT32_MAX) return false;
                c->pad_to(row);
                if (c->text.capacity() < c->text.size() + s.size()) {
                    // Room for the rest of the batch at the mean length so far, and some.
                    size_t mean = (c->text.size() + s.size()) / static_cast<size_t>(row + 1) + 1;
                    size_t wanted = c->text.size() + s.size() + mean * static_cast<size_t>(count - row) * 5 / 4;
                    c->text.reserve(std::min(wanted, c->text.size() + bytes_left));
                }
                c->text.append(s);
                c->offsets.push_back(static_cast<int32_t>(c->text.size()));
                break;
            }
            case element_type::INT64: {
                int64_t i = value.get_int64().value_unsafe();
                if (c->kind == NONE) c->become(INT64, count);
                c->pad_to(row);
                if (c->kind == INT64) c->ints.push_back(i);
                else if (c->kind == DOUBLE) c->doubles.push_back(static_cast<double>(i));
                else return false;
                break;
            }
            case element_type::DOUBLE: {
                double d = value.get_double().value_unsafe();
                if (c->kind == NONE) c->become(DOUBLE, count);
                if (c->kind == INT64 && !c->declared) {  // pyarrow widens an inferred integer column
                    c->doubles.assign(c->ints.begin(), c->ints.end());
                    c->ints.clear();
                    c->kind = DOUBLE;
                }
                if (c->kind != DOUBLE) return false;
                c->pad_to(row);
                c->doubles.push_back(d);
                break;
            }
            case element_type::BOOL: {
                bool b = value.get_bool().value_unsafe();
                if (c->kind == NONE) c->become(BOOL, count);
                if (c->kind != BOOL) return false;
                c->pad_to(row);
                c->ints.push_back(b);
                break;
            }
            default:
                return false;  // an object, an array, or an integer beyond int64 (pyarrow reads it from its text)
        }
        c->valid.push_back(1);
        c->rows = row + 1;
        return true;
    }

    int64_t count = 0;
    size_t bytes_left = 0;  // of the records not read yet: no column's text outgrows them

    bool read(const char* data, const int32_t* offsets, int64_t records) {
        count = records;
        for (auto& c : columns) c->reserve(count);
        std::vector<Column*> previous;
        simdjson::dom::parser parser;  // the DOM parser picks the processor's fastest kernel at run time
        int32_t longest = 0;
        for (int64_t row = 0; row < count; row++) longest = std::max(longest, offsets[row + 1] - offsets[row]);
        std::vector<char> scratch(static_cast<size_t>(longest) + simdjson::SIMDJSON_PADDING, 0);
        for (int64_t row = 0; row < count; row++) {
            size_t length = static_cast<size_t>(offsets[row + 1] - offsets[row]);
            bytes_left = static_cast<size_t>(offsets[count] - offsets[row]);
            std::memcpy(scratch.data(), data + offsets[row], length);
            std::memset(scratch.data() + length, 0, simdjson::SIMDJSON_PADDING);
            simdjson::dom::element doc;
            if (parser.parse(scratch.data(), length, false).get(doc)) return false;
            simdjson::dom::object object;
            if (doc.get_object().get(object)) return false;
            size_t position = 0;
            for (auto field : object) {
                // Records of a topic mostly list their fields in the same order: the column the
                // previous record had at this position is tried before the hash table.
                Column* c = position < previous.size() ? previous[position] : nullptr;
                if (c == nullptr || c->name != field.key) {
                    c = column(field.key, NONE, false);
                    if (c == nullptr) return false;
                    if (position < previous.size()) previous[position] = c;
                    else previous.push_back(c);
                }
                if (!take(c, row, field.value)) return false;
                position++;
            }
        }
        for (auto& c : columns) c->pad_to(count);
        return true;
    }
};

PyObject* bytes_of(const void* data, size_t size) {
    return PyBytes_FromStringAndSize(static_cast<const char*>(data), static_cast<Py_ssize_t>(size));
}

PyObject* none() { Py_RETURN_NONE; }

// A column's buffer, owned by the Python object pyarrow wraps through the buffer protocol: a bytes
// object meant copying every column (a batch's whole text) once more, holding the GIL.
struct Owned {
    PyObject_HEAD
    void* container;
    void (*destroy)(void*);
    const void* data;
    Py_ssize_t size;
};

int owned_buffer(PyObject* self, Py_buffer* view, int flags) {
    auto* owned = reinterpret_cast<Owned*>(self);
    return PyBuffer_FillInfo(view, self, const_cast<void*>(owned->data), owned->size, 1, flags);
}

void owned_dealloc(PyObject* self) {
    auto* owned = reinterpret_cast<Owned*>(self);
    owned->destroy(owned->container);
    PyObject_Free(self);
}

PyBufferProcs owned_procs = {owned_buffer, nullptr};
PyTypeObject OwnedType = {PyVarObject_HEAD_INIT(nullptr, 0)};

template <typename C>
PyObject* owned(C& container) {
    size_t size = container.size() * sizeof(typename C::value_type);
    if (size == 0) return bytes_of(nullptr, 0);
    Owned* self = PyObject_New(Owned, &OwnedType);
    if (self == nullptr) return nullptr;
    C* moved = new (std::nothrow) C(std::move(container));
    if (moved == nullptr) {
        PyObject_Free(self);
        return PyErr_NoMemory();
    }
    self->container = moved;
    self->destroy = [](void* p) { delete static_cast<C*>(p); };
    self->data = moved->data();
    self->size = static_cast<Py_ssize_t>(size);
    return reinterpret_cast<PyObject*>(self);
}

// One flag a byte (or a word) as an Arrow bitmap.
template <typename T>
PyObject* bits_of(const std::vector<T>& flags) {
    std::string bits((flags.size() + 7) / 8, '\0');
    for (size_t i = 0; i < flags.size(); i++)
        if (flags[i]) bits[i / 8] |= static_cast<char>(1 << (i % 8));
    return owned(bits);
}

// (name, kind, null count, validity bits or None, values, string data or None) for a column,
// whose buffers it takes.
PyObject* column_tuple(Column& c, int64_t count) {
    int64_t nulls = count;
    for (uint8_t v : c.valid) nulls -= v;
    PyObject *values, *text;
    if (c.kind == STRING) {
        values = owned(c.offsets);
        text = owned(c.text);
    } else {
        text = none();
        values = c.kind == INT64    ? owned(c.ints)
                 : c.kind == DOUBLE ? owned(c.doubles)
                 : c.kind == BOOL   ? bits_of(c.ints)
                                    : none();
    }
    PyObject* name = PyUnicode_DecodeUTF8(c.name.data(), static_cast<Py_ssize_t>(c.name.size()), "strict");
    PyObject* valid = c.kind == NONE || nulls == 0 ? none() : bits_of(c.valid);
    if (name == nullptr || values == nullptr || text == nullptr || valid == nullptr) {
        Py_XDECREF(name);
        Py_XDECREF(values);
        Py_XDECREF(text);
        Py_XDECREF(valid);
        return nullptr;
    }
    return Py_BuildValue("(NCLNNN)", name, static_cast<int>(c.kind), static_cast<long long>(nulls), valid, values,
                         text);
}

// read(offsets, data, count, declared, max_columns) -> [column tuple] or None.
// `offsets` holds count + 1 int32 offsets into `data`; `declared` is [(name, kind)].
PyObject* read(PyObject*, PyObject* args) {
    Py_buffer offsets, data;
    Py_ssize_t count, max_columns;
    PyObject* declared;
    if (!PyArg_ParseTuple(args, "y*y*nOn", &offsets, &data, &count, &declared, &max_columns)) return nullptr;
    std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> hold_offsets(&offsets, PyBuffer_Release);
    std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> hold_data(&data, PyBuffer_Release);
    if (offsets.len < static_cast<Py_ssize_t>((count + 1) * sizeof(int32_t))) {
        PyErr_SetString(PyExc_ValueError, "fewer offsets than records");
        return nullptr;
    }
    Reader reader;
    reader.max_columns = static_cast<size_t>(max_columns);
    PyObject* items = PySequence_Fast(declared, "declared must be a sequence of (name, kind)");
    if (items == nullptr) return nullptr;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items); i++) {
        const char *name, *kind;
        Py_ssize_t name_size;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "s#s", &name, &name_size, &kind)) {
            Py_DECREF(items);
            return nullptr;
        }
        reader.max_columns++;
        reader.column(std::string_view(name, static_cast<size_t>(name_size)), static_cast<Kind>(kind[0]), true);
    }
    Py_DECREF(items);
    const auto* offset_values = static_cast<const int32_t*>(offsets.buf);
    if (offset_values[count] > data.len) {
        PyErr_SetString(PyExc_ValueError, "offsets beyond the data");
        return nullptr;
    }
    bool ok;
    Py_BEGIN_ALLOW_THREADS
    try {
        ok = reader.read(static_cast<const char*>(data.buf), offset_values, count);
    } catch (const std::exception&) {  // out of memory: pyarrow's reader says what it can
        ok = false;
    }
    Py_END_ALLOW_THREADS
    if (!ok) Py_RETURN_NONE;
    PyObject* result = PyList_New(0);
    if (result == nullptr) return nullptr;
    for (auto& c : reader.columns) {
        PyObject* item = column_tuple(*c, count);
        if (item == nullptr || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(result);
            return nullptr;
        }
        Py_DECREF(item);
    }
    return result;
}

PyObject* implementation(PyObject*, PyObject*) {
    return PyUnicode_FromString(simdjson::get_active_implementation()->name().c_str());
}

PyMethodDef methods[] = {
    {"implementation", implementation, METH_NOARGS, "The simdjson kernel this processor runs."},
    {"read", read, METH_VARARGS, "Flat JSON objects into Arrow column buffers, or None where pyarrow must read them."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_flat_json", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__flat_json() {
    OwnedType.tp_name = "ingestion._flat_json.Buffer";
    OwnedType.tp_basicsize = sizeof(Owned);
    OwnedType.tp_flags = Py_TPFLAGS_DEFAULT;
    OwnedType.tp_dealloc = owned_dealloc;
    OwnedType.tp_as_buffer = &owned_procs;
    if (PyType_Ready(&OwnedType) < 0) return nullptr;
    return PyModule_Create(&module);
}
