// A minimal pickle machine for the state dicts torch.save writes, and read_torch_checkpoint,
// which feeds it the zip's data.pkl and storages. Not Python: no code runs; callables are only
// recognised by name (tensor rebuilders, OrderedDict) and everything else becomes an opaque object.
//
// What torch.save({"model": state_dict}) pickles (protocol 2): a dict whose "model" value is a
// collections.OrderedDict built by REDUCE, filled by SETITEMS, then BUILD with its _metadata.
// Each tensor is REDUCE(torch._utils._rebuild_tensor_v2, (storage, storage_offset, size, stride,
// requires_grad, backward_hooks)), where storage is a BINPERSID of the tuple
// ('storage', torch.FloatStorage | HalfStorage | BFloat16Storage, key, location, numel) and its
// bytes are the zip entry <prefix>/data/<key>. Tied tensors share one key.
//
// The file is distrusted: values live in one arena addressed by index (so hostile pickles can
// build neither deep recursion nor reference cycles), the stack and arena are bounded, and every
// error names the pickle and the byte offset of the opcode.
#include <algorithm>
#include <bit>
#include <cstring>
#include <iterator>
#include <limits>
#include <unordered_map>

#include "microlm/convert.h"
#include "microlm/dtype.h"
#include "microlm/error.h"

namespace microlm {
namespace {

static_assert(std::endian::native == std::endian::little, "checkpoint bytes are read as little-endian");

constexpr size_t kMaxStack = size_t{1} << 20;
constexpr size_t kMaxValues = size_t{1} << 24;
constexpr int64_t kMaxElements = int64_t{1} << 40;

enum class Kind : uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor,
    kObject
};

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::kNone:
            return "None";
        case Kind::kBool:
            return "bool";
        case Kind::kInt:
            return "int";
        case Kind::kFloat:
            return "float";
        case Kind::kStr:
            return "str";
        case Kind::kBytes:
            return "bytes";
        case Kind::kTuple:
            return "tuple";
        case Kind::kList:
            return "list";
        case Kind::kDict:
            return "dict";
        case Kind::kGlobal:
            return "global";
        case Kind::kStorage:
            return "storage";
        case Kind::kTensor:
            return "tensor";
        case Kind::kObject:
            return "object";
    }
    return "?";
}

// One pickled value. Containers hold arena indices: items of a tuple or list, alternating keys
// and values of a dict.
struct Value {
    Kind kind = Kind::kNone;
    int64_t i = 0;                // int, bool; storage: numel; tensor: storage offset
    double f = 0;                 // float
    std::string s;                // str, bytes; global and object: "module.name"; storage: its type
    std::string key;              // storage: key of its bytes in the archive
    std::vector<size_t> items;    // tuple, list, dict
    size_t storage = 0;           // tensor: index of its storage
    std::vector<int64_t> size;    // tensor: shape, outermost first
    std::vector<int64_t> stride;  // tensor: strides in elements
};

const char* opcode_name(uint8_t op) {
    switch (op) {
        case 0x80:
            return "PROTO";
        case 0x95:
            return "FRAME";
        case '}':
            return "EMPTY_DICT";
        case ')':
            return "EMPTY_TUPLE";
        case ']':
            return "EMPTY_LIST";
        case 0x85:
            return "TUPLE1";
        case 0x86:
            return "TUPLE2";
        case 0x87:
            return "TUPLE3";
        case 't':
            return "TUPLE";
        case 'l':
            return "LIST";
        case 'd':
            return "DICT";
        case '(':
            return "MARK";
        case 'X':
            return "BINUNICODE";
        case 0x8c:
            return "SHORT_BINUNICODE";
        case 0x8d:
            return "BINUNICODE8";
        case 'B':
            return "BINBYTES";
        case 'C':
            return "SHORT_BINBYTES";
        case 0x8e:
            return "BINBYTES8";
        case 'J':
            return "BININT";
        case 'K':
            return "BININT1";
        case 'M':
            return "BININT2";
        case 0x8a:
            return "LONG1";
        case 'G':
            return "BINFLOAT";
        case 'c':
            return "GLOBAL";
        case 0x93:
            return "STACK_GLOBAL";
        case 'Q':
            return "BINPERSID";
        case 'R':
            return "REDUCE";
        case 0x81:
            return "NEWOBJ";
        case 'b':
            return "BUILD";
        case 's':
            return "SETITEM";
        case 'u':
            return "SETITEMS";
        case 'a':
            return "APPEND";
        case 'e':
            return "APPENDS";
        case 'q':
            return "BINPUT";
        case 'r':
            return "LONG_BINPUT";
        case 0x94:
            return "MEMOIZE";
        case 'h':
            return "BINGET";
        case 'j':
            return "LONG_BINGET";
        case 0x88:
            return "NEWTRUE";
        case 0x89:
            return "NEWFALSE";
        case 'N':
            return "NONE";
        case '0':
            return "POP";
        case '1':
            return "POP_MARK";
        case '2':
            return "DUP";
        case '.':
            return "STOP";
        default:
            return nullptr;
    }
}

class Unpickler {
public:
    Unpickler(const std::string& label, std::span<const uint8_t> b) : label_(label), b_(b) {}

    size_t run() {
        while (true) {
            if (pos_ >= b_.size()) fail_at(pos_, "the pickle ends without STOP (truncated?)");
            op_pos_ = pos_;
            op_ = b_[pos_++];
            if (!opcode_name(op_))
                fail("unsupported pickle opcode " + hex(op_) +
                     " (not one torch.save emits for a state dict)");
            if (step()) return pop();  // STOP: the top of the stack is the result, as in Python
        }
    }

    const Value& at(size_t i) const { return values_[i]; }
    [[noreturn]] void fail_value(const std::string& msg) const { throw Error(label_ + ": " + msg); }

private:
    static std::string hex(uint8_t b) {
        static const char d[] = "0123456789abcdef";
        return std::string("0x") + d[b >> 4] + d[b & 15];
    }
    [[noreturn]] void fail_at(size_t off, const std::string& msg) const {
        throw Error(label_ + ": offset " + std::to_string(off) + ": " + msg);
    }
    [[noreturn]] void fail(const std::string& msg) const {
        const char* n = opcode_name(op_);
        fail_at(op_pos_, std::string(n ? n : "opcode") + ": " + msg);
    }

    // Operand bytes.
    const uint8_t* take(uint64_t n) {
        if (n > b_.size() - pos_) {
            fail("needs " + std::to_string(n) + " operand bytes, " + std::to_string(b_.size() - pos_) +
                 " remain (truncated?)");
        }
        const uint8_t* p = b_.data() + pos_;
        pos_ += static_cast<size_t>(n);
        return p;
    }
    uint64_t le(int n) {
        const uint8_t* p = take(static_cast<uint64_t>(n));
        uint64_t v = 0;
        for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
        return v;
    }
    std::string bytes_operand(uint64_t n) {
        const uint8_t* p = take(n);
        return {reinterpret_cast<const char*>(p), static_cast<size_t>(n)};
    }
    std::string line() {
        const size_t start = pos_;
        while (pos_ < b_.size() && b_[pos_] != '\n') ++pos_;
        if (pos_ >= b_.size()) fail("unterminated line (truncated?)");
        return {reinterpret_cast<const char*>(b_.data() + start), pos_++ - start};
    }

    // Arena and stack.
    size_t make(Value v) {
        if (values_.size() >= kMaxValues) fail("more than " + std::to_string(kMaxValues) + " values");
        values_.push_back(std::move(v));
        return values_.size() - 1;
    }
    size_t make(Kind k) {
        Value v;
        v.kind = k;
        return make(std::move(v));
    }
    void push(size_t v) {
        if (stack_.size() >= kMaxStack) fail("stack deeper than " + std::to_string(kMaxStack));
        stack_.push_back(v);
    }
    size_t pop() {
        if (stack_.size() <= stack_floor()) fail("stack underflow");
        const size_t v = stack_.back();
        stack_.pop_back();
        return v;
    }
    size_t top() {
        if (stack_.size() <= stack_floor()) fail("stack underflow");
        return stack_.back();
    }
    size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
    std::vector<size_t> pop_mark() {
        if (marks_.empty()) fail("no MARK to pop to");
        std::vector<size_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
        stack_.resize(marks_.back());
        marks_.pop_back();
        return items;
    }
    size_t tuple(std::vector<size_t> items) {
        Value v;
        v.kind = Kind::kTuple;
        v.items = std::move(items);
        return make(std::move(v));
    }
    size_t int_value(int64_t x) {
        Value v;
        v.kind = Kind::kInt;
        v.i = x;
        return make(std::move(v));
    }
    size_t str_value(Kind k, std::string s) {
        Value v;
        v.kind = k;
        v.s = std::move(s);
        return make(std::move(v));
    }
    void memo_put(uint64_t idx) {
        if (memo_.size() >= kMaxValues && !memo_.count(idx)) fail("too many memo entries");
        memo_[idx] = top();
    }
    void memo_get(uint64_t idx) {
        const auto it = memo_.find(idx);
        if (it == memo_.end()) fail("memo entry " + std::to_string(idx) + " was never stored");
        push(it->second);
    }
    const Value& expect(size_t v, Kind k, const char* what) {
        if (values_[v].kind != k) {
            fail(std::string(what) + " is a " + kind_name(values_[v].kind) + ", expected a " + kind_name(k));
        }
        return values_[v];
    }

    void add_items(size_t target, const std::vector<size_t>& items, bool dict) {
        Value& t = values_[target];
        if (t.kind == Kind::kObject) return;  // an object we do not model: its items do not matter
        if (dict && t.kind != Kind::kDict)
            fail(std::string("target is a ") + kind_name(t.kind) + ", expected a dict");
        if (!dict && t.kind != Kind::kList)
            fail(std::string("target is a ") + kind_name(t.kind) + ", expected a list");
        if (dict && items.size() % 2 != 0)
            fail("odd number of keys and values (" + std::to_string(items.size()) + ")");
        t.items.insert(t.items.end(), items.begin(), items.end());
    }

    std::vector<int64_t> int_tuple(size_t v, const char* what) {
        const Value& t = expect(v, Kind::kTuple, what);
        std::vector<int64_t> out;
        for (const size_t x : t.items) out.push_back(expect(x, Kind::kInt, what).i);
        return out;
    }

    // REDUCE: the few callables whose result matters; anything else is an opaque object.
    size_t reduce(size_t callable, size_t args) {
        const Value& c = values_[callable];
        const std::string name = c.kind == Kind::kGlobal ? c.s : std::string("?");
        const Value& a = expect(args, Kind::kTuple, "REDUCE's arguments");
        if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
            if (a.items.size() < 4)
                fail(name + " takes at least 4 arguments, got " + std::to_string(a.items.size()));
            Value t;
            t.kind = Kind::kTensor;
            t.storage = a.items[0];
            expect(t.storage, Kind::kStorage, "the tensor's storage");
            t.i = expect(a.items[1], Kind::kInt, "the storage offset").i;
            t.size = int_tuple(a.items[2], "the tensor's size");
            t.stride = int_tuple(a.items[3], "the tensor's stride");
            if (t.size.size() != t.stride.size()) {
                fail("tensor of " + std::to_string(t.size.size()) + " dimensions has " +
                     std::to_string(t.stride.size()) + " strides");
            }
            return make(std::move(t));
        }
        if (name == "torch._utils._rebuild_parameter" ||
            name == "torch._utils._rebuild_parameter_with_state") {
            if (a.items.empty()) fail(name + " without arguments");
            return a.items[0];
        }
        if (name == "collections.OrderedDict" && a.items.empty()) return make(Kind::kDict);
        return str_value(Kind::kObject, name);
    }

    // BINPERSID: torch's ('storage', storage_type, key, location, numel).
    size_t persistent_load(size_t pid) {
        const Value& t = expect(pid, Kind::kTuple, "the persistent id");
        if (t.items.size() != 5 || values_[t.items[0]].kind != Kind::kStr ||
            values_[t.items[0]].s != "storage") {
            fail("persistent id is not a ('storage', type, key, location, numel) tuple");
        }
        Value s;
        s.kind = Kind::kStorage;
        s.s = expect(t.items[1], Kind::kGlobal, "the storage type").s;
        s.key = expect(t.items[2], Kind::kStr, "the storage key").s;
        s.i = expect(t.items[4], Kind::kInt, "the storage size").i;
        if (s.i < 0) fail("storage '" + s.key + "' has negative size " + std::to_string(s.i));
        return make(std::move(s));
    }

    // Executes op_; true at STOP.
    bool step() {
        switch (op_) {
            case 0x80: {
                const uint64_t proto = le(1);
                if (proto < 2 || proto > 5) fail("protocol " + std::to_string(proto) + ", expected 2 to 5");
                break;
            }
            case 0x95:  // FRAME: only a read-ahead hint
                le(8);
                break;
            case '}':
                push(make(Kind::kDict));
                break;
            case ']':
                push(make(Kind::kList));
                break;
            case ')':
                push(tuple({}));
                break;
            case 0x85:
            case 0x86:
            case 0x87: {
                const size_t n = static_cast<size_t>(op_ - 0x84);
                std::vector<size_t> items(n);
                for (size_t k = n; k-- > 0;) items[k] = pop();
                push(tuple(std::move(items)));
                break;
            }
            case 't':
                push(tuple(pop_mark()));
                break;
            case 'l': {
                const size_t l = make(Kind::kList);
                values_[l].items = pop_mark();
                push(l);
                break;
            }
            case 'd': {
                std::vector<size_t> items = pop_mark();
                const size_t d = make(Kind::kDict);
                add_items(d, items, true);
                push(d);
                break;
            }
            case '(':
                if (marks_.size() >= kMaxStack) fail("too many nested MARKs");
                marks_.push_back(stack_.size());
                break;
            case 'X':
                push(str_value(Kind::kStr, bytes_operand(le(4))));
                break;
            case 0x8c:
                push(str_value(Kind::kStr, bytes_operand(le(1))));
                break;
            case 0x8d:
                push(str_value(Kind::kStr, bytes_operand(le(8))));
                break;
            case 'B':
                push(str_value(Kind::kBytes, bytes_operand(le(4))));
                break;
            case 'C':
                push(str_value(Kind::kBytes, bytes_operand(le(1))));
                break;
            case 0x8e:
                push(str_value(Kind::kBytes, bytes_operand(le(8))));
                break;
            case 'J':
                push(int_value(static_cast<int32_t>(static_cast<uint32_t>(le(4)))));
                break;
            case 'K':
                push(int_value(static_cast<int64_t>(le(1))));
                break;
            case 'M':
                push(int_value(static_cast<int64_t>(le(2))));
                break;
            case 0x8a: {
                // Two's complement little-endian of n bytes; wider than 64 bits cannot be a size.
                const uint64_t n = le(1);
                if (n > 8) fail(std::to_string(n) + "-byte integer does not fit in 64 bits");
                uint64_t v = n ? le(static_cast<int>(n)) : 0;
                if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
                push(int_value(static_cast<int64_t>(v)));
                break;
            }
            case 'G': {
                const uint8_t* p = take(8);  // big-endian IEEE 754 double
                uint64_t bits = 0;
                for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
                Value v;
                v.kind = Kind::kFloat;
                v.f = std::bit_cast<double>(bits);
                push(make(std::move(v)));
                break;
            }
            case 'c': {
                std::string module = line();
                push(str_value(Kind::kGlobal, module + "." + line()));
                break;
            }
            case 0x93: {
                const size_t name = pop(), module = pop();
                push(str_value(Kind::kGlobal, expect(module, Kind::kStr, "the module").s + "." +
                                                  expect(name, Kind::kStr, "the name").s));
                break;
            }
            case 'Q':
                push(persistent_load(pop()));
                break;
            case 'R': {
                const size_t args = pop(), callable = pop();
                push(reduce(callable, args));
                break;
            }
            case 0x81: {
                pop();
                const size_t cls = pop();
                push(str_value(Kind::kObject, values_[cls].kind == Kind::kGlobal ? values_[cls].s : "?"));
                break;
            }
            case 'b':  // BUILD sets attributes (an OrderedDict's _metadata): not needed
                pop();
                top();
                break;
            case 's': {
                const size_t v = pop(), k = pop();
                add_items(top(), {k, v}, true);
                break;
            }
            case 'u': {
                std::vector<size_t> items = pop_mark();
                add_items(top(), items, true);
                break;
            }
            case 'a': {
                const size_t v = pop();
                add_items(top(), {v}, false);
                break;
            }
            case 'e': {
                std::vector<size_t> items = pop_mark();
                add_items(top(), items, false);
                break;
            }
            case 'q':
                memo_put(le(1));
                break;
            case 'r':
                memo_put(le(4));
                break;
            case 0x94:
                memo_put(memo_.size());
                break;
            case 'h':
                memo_get(le(1));
                break;
            case 'j':
                memo_get(le(4));
                break;
            case 0x88:
            case 0x89: {
                Value v;
                v.kind = Kind::kBool;
                v.i = op_ == 0x88;
                push(make(std::move(v)));
                break;
            }
            case 'N':
                push(make(Kind::kNone));
                break;
            case '0':
                pop();
                break;
            case '1':
                pop_mark();
                break;
            case '2':
                push(top());
                break;
            case '.':
                return true;
            default:
                fail("unsupported opcode");
        }
        return false;
    }

    const std::string& label_;
    std::span<const uint8_t> b_;
    size_t pos_ = 0, op_pos_ = 0;
    uint8_t op_ = 0;
    std::vector<Value> values_;
    std::vector<size_t> stack_;
    std::vector<size_t> marks_;  // stack heights at each open MARK
    std::unordered_map<uint64_t, size_t> memo_;
};

struct StorageType {
    const char* torch_name;
    const char* ggml_name;
    size_t bytes;
};
constexpr StorageType kStorageTypes[] = {
    {"torch.FloatStorage", "F32", 4},
    {"torch.HalfStorage", "F16", 2},
    {"torch.BFloat16Storage", "BF16", 2},
    {"torch.DoubleStorage", "F64", 8},
};

std::string shape_str(const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
    return s + "]";
}

// A tensor value → float32, after checking contiguity and that it lies inside its storage.
CheckpointTensor read_tensor(const std::string& label, const std::string& name, const Value& t,
                             const Value& st, const StorageBytes& storage) {
    const StorageType* type = nullptr;
    for (const StorageType& s : kStorageTypes) {
        if (st.s == s.torch_name) type = &s;
    }
    if (!type)
        throw Error(label + ": tensor '" + name + "' has storage type " + st.s +
                    ", which is not a float type");
    const std::string where = label + ": tensor '" + name + "'";
    int64_t numel = 1;
    for (const int64_t d : t.size) {
        if (d < 0 || (d > 0 && numel > kMaxElements / d))
            throw Error(where + ": invalid shape " + shape_str(t.size));
        numel *= d;
    }
    // Contiguous row-major: each stride is the product of the later sizes (free where size is 1).
    int64_t expect = 1;
    for (size_t k = t.size.size(); k-- > 0;) {
        if (t.size[k] != 1 && t.stride[k] != expect) {
            throw Error(where + ": strides " + shape_str(t.stride) + " for shape " + shape_str(t.size) +
                        " are not contiguous (save a .contiguous() copy)");
        }
        expect *= t.size[k];
    }
    if (st.i > kMaxElements)
        throw Error(where + ": storage '" + st.key + "' claims " + std::to_string(st.i) + " elements");
    if (t.i < 0 || t.i > st.i || numel > st.i - t.i) {
        throw Error(where + ": " + std::to_string(numel) + " elements from offset " + std::to_string(t.i) +
                    " lie outside its storage '" + st.key + "' of " + std::to_string(st.i) + " elements");
    }
    const std::span<const uint8_t> bytes = storage(st.key);
    const uint64_t want = static_cast<uint64_t>(st.i) * type->bytes;
    if (bytes.size() != want) {
        throw Error(where + ": storage '" + st.key + "' should hold " + std::to_string(st.i) + " " +
                    type->ggml_name + " elements (" + std::to_string(want) + " bytes), found " +
                    std::to_string(bytes.size()) + " bytes");
    }
    CheckpointTensor out;
    out.shape = t.size;
    out.stored_type = type->ggml_name;
    out.data.resize(static_cast<size_t>(numel));
    const uint8_t* p = bytes.data() + static_cast<size_t>(t.i) * type->bytes;
    float* dst = out.data.data();
    const std::string_view kind = type->ggml_name;
    if (kind == "F32") {
        if (!out.data.empty()) std::memcpy(dst, p, out.data.size() * 4);
    } else if (kind == "F64") {
        for (size_t k = 0; k < out.data.size(); ++k) {
            double d;
            std::memcpy(&d, p + 8 * k, 8);
            dst[k] = static_cast<float>(d);
        }
    } else {
        const bool f16 = kind == "F16";
        for (size_t k = 0; k < out.data.size(); ++k) {
            const auto h = static_cast<uint16_t>(p[2 * k] | (p[2 * k + 1] << 8));
            dst[k] = f16 ? fp16_to_fp32(h) : std::bit_cast<float>(uint32_t{h} << 16);
        }
    }
    return out;
}

}  // namespace

TensorMap unpickle_state_dict(const std::string& label, std::span<const uint8_t> pickle,
                              const StorageBytes& storage) {
    Unpickler u(label, pickle);
    size_t dict = u.run();
    if (u.at(dict).kind != Kind::kDict) {
        u.fail_value(std::string("the pickled object is of type ") + kind_name(u.at(dict).kind) +
                     ", expected a dict (a state dict or {\"model\": state_dict})");
    }
    const std::vector<size_t>& top = u.at(dict).items;
    for (size_t k = 0; k + 1 < top.size(); k += 2) {
        const Value& key = u.at(top[k]);
        if (key.kind == Kind::kStr && key.s == "model" && u.at(top[k + 1]).kind == Kind::kDict)
            dict = top[k + 1];
    }
    TensorMap out;
    const std::vector<size_t>& items = u.at(dict).items;
    for (size_t k = 0; k + 1 < items.size(); k += 2) {
        const Value& key = u.at(items[k]);
        const Value& v = u.at(items[k + 1]);
        if (key.kind != Kind::kStr || v.kind != Kind::kTensor) continue;
        const Value& st = u.at(v.storage);
        const bool is_float = std::any_of(std::begin(kStorageTypes), std::end(kStorageTypes),
                                          [&](const StorageType& s) { return st.s == s.torch_name; });
        if (!is_float) continue;  // integer buffers (step counters, masks) are not weights
        out[key.s] = read_tensor(label, key.s, v, st, storage);
    }
    if (out.empty()) u.fail_value("the state dict holds no float tensors");
    return out;
}

TensorMap read_torch_checkpoint(const std::string& path) {
    const auto zip = ZipArchive::open(path);
    // torch.save names the archive's top folder after the file ("archive" when saved to a buffer).
    const ZipArchive::Entry* pkl = nullptr;
    for (const auto& e : zip->entries()) {
        const size_t slash = e.name.find('/');
        if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
            if (pkl)
                throw Error(path + ": holds both " + pkl->name + " and " + e.name +
                            "; expected one data.pkl");
            pkl = &e;
        }
    }
    if (!pkl) {
        throw Error(path +
                    ": no <name>/data.pkl entry: not a torch.save checkpoint (the legacy format of "
                    "PyTorch < 1.6 is not supported; re-save it with a current torch.save)");
    }
    const std::string prefix = pkl->name.substr(0, pkl->name.size() - std::string_view("data.pkl").size());
    const StorageBytes storage = [&](const std::string& key) {
        const ZipArchive::Entry* e = zip->find(prefix + "data/" + key);
        if (!e) throw Error(path + ": storage '" + key + "' has no entry " + prefix + "data/" + key);
        return zip->data(*e);
    };
    return unpickle_state_dict(path + ":" + pkl->name, zip->data(*pkl), storage);
}

}  // namespace microlm
