// GGUF reader and writer: a round trip of every value type (nested arrays included) and of
// tensors, and hostile files (truncated, bit-flipped, hand-crafted) that must produce a
// microlm::Error naming the problem, never a crash (this test also runs under ASan/UBSan).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "microlm/error.h"
#include "microlm/gguf.h"

using namespace microlm;

namespace {

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("microlm_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::vector<uint8_t> read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::string sample_file() {
    GgufWriter w;
    w.set("general.architecture", GgufValue::str("llama"));
    w.set("u8", {GgufValueType::UINT8, uint64_t{200}});
    w.set("i8", {GgufValueType::INT8, int64_t{-100}});
    w.set("u16", {GgufValueType::UINT16, uint64_t{60000}});
    w.set("i16", {GgufValueType::INT16, int64_t{-30000}});
    w.set("u32", GgufValue::u32(4000000000u));
    w.set("i32", GgufValue::i32(-2000000000));
    w.set("u64", GgufValue::u64(uint64_t{1} << 40));
    w.set("i64", {GgufValueType::INT64, int64_t{-(int64_t{1} << 40)}});
    w.set("f32", GgufValue::f32(0.25f));
    w.set("f64", {GgufValueType::FLOAT64, 1e-300});
    w.set("bool", GgufValue::boolean(true));
    w.set("str", GgufValue::str(std::string("with\0nul and ünïcode", 21)));
    w.set("strs", GgufValue::str_array({"a", "", "ccc"}));
    w.set("nested", GgufValue::array(GgufValueType::ARRAY, {GgufValue::i32_array({1, 2}), GgufValue::i32_array({})}));
    std::vector<float> f32(64);
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(i) * 0.5f;
    w.add_tensor("t.f32", DType::F32, {32, 2}, f32.data(), f32.size() * 4);
    // 8 rows of 68 bytes: the data ends exactly on the alignment, so every cut removes data.
    std::vector<uint8_t> q(dtype_row_bytes(DType::Q8_0, 64) * 8);
    for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<uint8_t>(i * 7);
    w.add_tensor("t.q8", DType::Q8_0, {64, 8}, q.data(), q.size());
    const std::string path = temp_path("sample.gguf");
    w.write(path);
    return path;
}

// Opening must either succeed or throw microlm::Error; anything else fails the test.
bool opens(const std::string& path, std::string* message = nullptr) {
    try {
        GgufFile::open(path);
        return true;
    } catch (const Error& e) {
        if (message) *message = e.what();
        return false;
    }
}

// A minimal hand-made header: magic, version, counts, then whatever the test appends.
struct Bytes {
    std::vector<uint8_t> b;
    template <typename T>
    Bytes& put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    Bytes& str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        b.insert(b.end(), {'G', 'G', 'U', 'F'});
        return put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
    }
};

// Writes the bytes plus 64 zero bytes (so that count checks pass and the parser reaches the
// defect) and returns the error message.
std::string error_of(const Bytes& bytes, const std::string& name) {
    const std::string path = temp_path(name);
    auto b = bytes.b;
    b.resize(b.size() + 64, 0);
    write_all(path, b);
    std::string msg;
    EXPECT_FALSE(opens(path, &msg)) << name << " opened but should not";
    std::filesystem::remove(path);
    std::printf("  %-12s -> %s\n", name.c_str(), msg.c_str());
    return msg;
}

}  // namespace

TEST(Gguf, RoundTripsEveryValueTypeAndTensor) {
    const std::string path = sample_file();
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->get_int("u8"), 200);
    EXPECT_EQ(f->get_int("i8"), -100);
    EXPECT_EQ(f->get_int("u16"), 60000);
    EXPECT_EQ(f->get_int("i16"), -30000);
    EXPECT_EQ(f->get_int("u32"), 4000000000LL);
    EXPECT_EQ(f->get_int("i32"), -2000000000LL);
    EXPECT_EQ(f->get_int("u64"), int64_t{1} << 40);
    EXPECT_EQ(f->get_int("i64"), -(int64_t{1} << 40));
    EXPECT_EQ(f->get_float("f32"), 0.25);
    EXPECT_EQ(f->get_float("f64"), 1e-300);
    EXPECT_EQ(f->get_bool_opt("bool"), true);
    EXPECT_EQ(f->get_str("str"), std::string("with\0nul and ünïcode", 21));
    EXPECT_EQ(f->get_str_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
    const GgufArray* nested = f->find("nested")->as_array();
    ASSERT_NE(nested, nullptr);
    ASSERT_EQ(nested->items.size(), 2u);
    EXPECT_EQ(nested->items[0].as_array()->items.size(), 2u);
    EXPECT_EQ(std::get<int64_t>(nested->items[0].as_array()->items[1].v), 2);
    EXPECT_EQ(f->find("u16")->type, GgufValueType::UINT16);

    const GgufTensor* t = f->find_tensor("t.f32");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dims, (std::vector<int64_t>{32, 2}));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 32, 0u);
    EXPECT_EQ(reinterpret_cast<const float*>(t->data)[63], 31.5f);
    const GgufTensor* q = f->find_tensor("t.q8");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->bytes, dtype_row_bytes(DType::Q8_0, 64) * 8);
    EXPECT_EQ(q->data[5], static_cast<uint8_t>(35));
    std::filesystem::remove(path);
}

TEST(Gguf, TypedGettersNameTheKeyAndTheTypes) {
    const std::string path = sample_file();
    auto f = GgufFile::open(path);
    try {
        f->get_str("u32");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'u32' has type u32, expected a string"), std::string::npos) << e.what();
    }
    EXPECT_THROW(f->get_int("no.such.key"), Error);
    EXPECT_EQ(f->get_int_opt("no.such.key"), std::nullopt);
    std::filesystem::remove(path);
}

TEST(Gguf, EveryTruncationIsAnError) {
    const std::string path = sample_file();
    const auto bytes = read_all(path);
    const std::string cut = temp_path("cut.gguf");
    for (size_t n = 0; n < bytes.size(); n += (n < 2048 ? 1 : 61)) {
        write_all(cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)));
        EXPECT_FALSE(opens(cut)) << "truncated to " << n << " of " << bytes.size() << " bytes";
    }
    std::filesystem::remove(cut);
    std::filesystem::remove(path);
}

TEST(Gguf, BitFlipsNeverCrash) {
    const std::string path = sample_file();
    const auto bytes = read_all(path);
    const std::string flipped = temp_path("flip.gguf");
    std::mt19937 rng(1234);
    int errors = 0;
    for (int i = 0; i < 3000; ++i) {
        auto b = bytes;
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) {
            // Mostly the header and metadata, where a flip changes structure, not data.
            const size_t at = rng() % std::min<size_t>(b.size(), 700);
            b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
        }
        write_all(flipped, b);
        errors += opens(flipped) ? 0 : 1;
    }
    std::printf("3000 bit-flipped files: %d rejected with an error, %d still valid\n", errors, 3000 - errors);
    EXPECT_GT(errors, 0);
    std::filesystem::remove(flipped);
    std::filesystem::remove(path);
}

TEST(Gguf, HostileHeadersGiveClearErrors) {
    EXPECT_NE(error_of(Bytes().put<uint32_t>(0x12345678), "magic").find("not a GGUF file"), std::string::npos);
    EXPECT_NE(error_of(Bytes().header(0, 0, 7), "version").find("version 7"), std::string::npos);
    EXPECT_NE(error_of(Bytes().header(uint64_t{1} << 60, 0), "tensors").find("tensor count"), std::string::npos);
    EXPECT_NE(error_of(Bytes().header(0, ~uint64_t{0}), "kvs").find("metadata count"), std::string::npos);
    // A key whose string length runs past the end of the file.
    EXPECT_NE(error_of(Bytes().header(0, 1).put<uint64_t>(uint64_t{1} << 40), "keylen").find("exceeds"), std::string::npos);
    EXPECT_NE(error_of(Bytes().header(0, 1).put<uint64_t>(1000).put<uint32_t>(0), "keylen2").find("truncated"),
              std::string::npos);
    // Unknown value type, bad bool, an array claiming 2^62 elements, arrays nested too deep.
    EXPECT_NE(error_of(Bytes().header(0, 1).str("k").put<uint32_t>(99), "vtype").find("value type 99"), std::string::npos);
    EXPECT_NE(error_of(Bytes().header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(5), "bool").find("bool value 5"),
              std::string::npos);
    EXPECT_NE(error_of(Bytes().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(uint64_t{1} << 62),
                       "arrlen")
                  .find("array length"),
              std::string::npos);
    Bytes deep = Bytes().header(0, 1).str("k").put<uint32_t>(9);
    for (int i = 0; i < 10; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
    EXPECT_NE(error_of(deep, "deep").find("nested deeper"), std::string::npos);
    // Duplicate key; alignment that is not a power of two.
    EXPECT_NE(error_of(Bytes().header(0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(1),
                       "dup")
                  .find("appears twice"),
              std::string::npos);
    EXPECT_NE(error_of(Bytes().header(0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(24), "align")
                  .find("power of two"),
              std::string::npos);
}

TEST(Gguf, HostileTensorInfosGiveClearErrors) {
    auto tensor = [](uint32_t n_dims, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
        Bytes b = Bytes().header(1, 0).str("w").put<uint32_t>(n_dims);
        for (uint64_t d : dims) b.put<uint64_t>(d);
        b.put<uint32_t>(type).put<uint64_t>(offset);
        while (b.b.size() % 32) b.b.push_back(0);
        // error_of appends 64 bytes of data
        return b;
    };
    EXPECT_NE(error_of(tensor(5, {1, 1, 1, 1, 1}, 0, 0), "ndims").find("5 dimensions"), std::string::npos);
    EXPECT_NE(error_of(tensor(2, {0, 4}, 0, 0), "zerodim").find("dimension 0 is 0"), std::string::npos);
    EXPECT_NE(error_of(tensor(2, {uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0), "overflow").find("63 bits"), std::string::npos);
    const std::string unsupported = error_of(tensor(1, {256}, 16, 0), "iq2xxs");
    EXPECT_NE(unsupported.find("tensor 'w' has type IQ2_XXS"), std::string::npos) << unsupported;
    EXPECT_NE(unsupported.find("supported: F32 F16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K"), std::string::npos)
        << unsupported;
    EXPECT_NE(error_of(tensor(1, {33}, 8, 0), "block").find("not a multiple"), std::string::npos);
    // A K-quant row must be whole 256-element super-blocks.
    EXPECT_NE(error_of(tensor(1, {96}, 12, 0), "kblock").find("not a multiple of the Q4_K block size 256"),
              std::string::npos);
    EXPECT_NE(error_of(tensor(1, {16}, 0, 64), "offset").find("of the data section"), std::string::npos);
    EXPECT_NE(error_of(tensor(1, {32}, 0, 0), "size").find("needs bytes [0, 128)"), std::string::npos);
    EXPECT_NE(error_of(tensor(1, {4}, 0, 8), "misaligned").find("not a multiple of the alignment"), std::string::npos);
    EXPECT_NE(error_of(tensor(1, {4}, 0, ~uint64_t{0} - 31), "huge offset").find("of the data section"), std::string::npos);
}

TEST(Gguf, MissingFileAndDirectoryAreErrors) {
    std::string msg;
    EXPECT_FALSE(opens("/nonexistent/model.gguf", &msg));
    EXPECT_NE(msg.find("/nonexistent/model.gguf: cannot open"), std::string::npos);
    EXPECT_FALSE(opens("/tmp", &msg));
}

TEST(Gguf, WriterRejectsWrongSizesAndLeavesNoPartialFile) {
    GgufWriter w;
    std::vector<float> v(10);
    EXPECT_THROW(w.add_tensor("x", DType::F32, {16}, v.data(), v.size() * 4), Error);
    EXPECT_THROW(w.add_tensor("x", DType::Q8_0, {10}, v.data(), 34), Error);
    EXPECT_THROW(w.write("/nonexistent-dir/out.gguf"), Error);
    EXPECT_FALSE(std::filesystem::exists("/nonexistent-dir/out.gguf.tmp"));
}
