// ZipArchive: the directory of a ZIP file and the bytes of its stored entries, as torch.save
// writes them. Not a general unzipper: compressed, encrypted and multi-disk archives are refused.
//
// Layout read here (all integers little-endian):
//   [local header 30 B + name + extra][data] ... for each entry (data may be padded by extra)
//   [central directory: 46 B + name + extra + comment per entry]
//   [ZIP64 end record 56 B + ZIP64 locator 20 B]   only in ZIP64 archives
//   [end of central directory 22 B + comment]     found by scanning back from the end
// Sizes and offsets come from the central directory (ZIP64 extra field when they are 0xFFFFFFFF);
// the local header is read only for its name and extra lengths, which set where the data starts.
#include <algorithm>
#include <array>
#include <set>

#include "microlm/convert.h"
#include "microlm/crc32.h"
#include "microlm/error.h"

namespace microlm {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22, kCentralSize = 46, kLocalSize = 30, kLocatorSize = 20, kZip64EndSize = 56;

// Bounds-checked little-endian reads of the mapped file; every failure names the offset.
class Reader {
public:
    Reader(std::span<const uint8_t> b, const std::string& path) : b_(b), path_(path) {}

    void need(uint64_t off, uint64_t n, const char* what) const {
        if (off > b_.size() || n > b_.size() - off) {
            throw Error(path_ + ": " + what + " at offset " + std::to_string(off) + " needs " +
                        std::to_string(n) + " bytes, but the file has " + std::to_string(b_.size()) +
                        " (truncated or corrupt zip)");
        }
    }
    uint64_t le(uint64_t off, int n) const {
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; --i) v = (v << 8) | b_[off + static_cast<uint64_t>(i)];
        return v;
    }
    uint16_t u16(uint64_t off) const { return static_cast<uint16_t>(le(off, 2)); }
    uint32_t u32(uint64_t off) const { return static_cast<uint32_t>(le(off, 4)); }
    uint64_t u64(uint64_t off) const { return le(off, 8); }
    std::string str(uint64_t off, uint64_t n) const {
        return {reinterpret_cast<const char*>(b_.data() + off), n};
    }

private:
    std::span<const uint8_t> b_;
    const std::string& path_;
};

}  // namespace

std::unique_ptr<ZipArchive> ZipArchive::open(const std::string& path) {
    std::unique_ptr<ZipArchive> z(new ZipArchive(path));
    z->parse();
    return z;
}

void ZipArchive::parse() {
    const std::string& path = file_.path();
    const std::span<const uint8_t> bytes = file_.bytes();
    const uint64_t size = bytes.size();
    const Reader r(bytes, path);
    if (size < kEndSize) {
        throw Error(path + ": " + std::to_string(size) +
                    " bytes is too small for a zip file (not a torch.save checkpoint?)");
    }

    // The end record is the last 22 bytes unless the archive has a comment (up to 65535 bytes).
    uint64_t end = UINT64_MAX;
    const uint64_t lowest = size - kEndSize > 0xFFFF ? size - kEndSize - 0xFFFF : 0;
    for (uint64_t p = size - kEndSize + 1; p-- > lowest;) {
        if (r.u32(p) == kEndSig && p + kEndSize + r.u16(p + 20) == size) {
            end = p;
            break;
        }
    }
    if (end == UINT64_MAX)
        throw Error(path + ": no zip end-of-central-directory record (not a zip file, or truncated)");
    if (r.u16(end + 4) != 0 || r.u16(end + 6) != 0)
        throw Error(path + ": multi-disk zip archives are not supported");
    uint64_t n_entries = r.u16(end + 10);
    uint64_t cd_size = r.u32(end + 12);
    uint64_t cd_offset = r.u32(end + 16);

    if (end >= kLocatorSize && r.u32(end - kLocatorSize) == kZip64LocatorSig) {
        const uint64_t z64 = r.u64(end - kLocatorSize + 8);
        r.need(z64, kZip64EndSize, "ZIP64 end record");
        if (r.u32(z64) != kZip64EndSig) {
            throw Error(path + ": ZIP64 locator points at offset " + std::to_string(z64) +
                        ", which holds no ZIP64 end record");
        }
        n_entries = r.u64(z64 + 32);
        cd_size = r.u64(z64 + 40);
        cd_offset = r.u64(z64 + 48);
    }
    r.need(cd_offset, cd_size, "central directory");
    if (n_entries > cd_size / kCentralSize) {
        throw Error(path + ": central directory of " + std::to_string(cd_size) + " bytes cannot hold " +
                    std::to_string(n_entries) + " entries");
    }

    std::set<std::string> names;
    uint64_t p = cd_offset;
    const uint64_t cd_end = cd_offset + cd_size;
    for (uint64_t i = 0; i < n_entries; ++i) {
        if (p > cd_end || cd_end - p < kCentralSize) {
            throw Error(path + ": central directory entry " + std::to_string(i) + " at offset " +
                        std::to_string(p) + " runs past the directory's end at " + std::to_string(cd_end));
        }
        if (r.u32(p) != kCentralSig) {
            throw Error(path + ": expected a central directory entry at offset " + std::to_string(p) +
                        " (corrupt zip)");
        }
        const uint16_t flags = r.u16(p + 8), method = r.u16(p + 10);
        const uint32_t crc = r.u32(p + 16);
        uint64_t csize = r.u32(p + 20), usize = r.u32(p + 24);
        const uint64_t nlen = r.u16(p + 28), elen = r.u16(p + 30), clen = r.u16(p + 32);
        uint64_t local = r.u32(p + 42);
        if (cd_end - p - kCentralSize < nlen + elen + clen) {
            throw Error(path + ": central directory entry " + std::to_string(i) + " at offset " +
                        std::to_string(p) + " has a name/extra/comment running past the directory");
        }
        Entry e;
        e.name = r.str(p + kCentralSize, nlen);
        e.crc32 = crc;

        // ZIP64 extended information: 8-byte values for exactly those fields that are 0xFFFFFFFF,
        // in the order uncompressed size, compressed size, local header offset.
        for (uint64_t x = p + kCentralSize + nlen, xe = x + elen; x + 4 <= xe;) {
            const uint16_t id = r.u16(x), len = r.u16(x + 2);
            if (x + 4 + len > xe) throw Error(path + ": " + e.name + ": extra field runs past its entry");
            if (id == 0x0001) {
                uint64_t q = x + 4;
                for (uint64_t* field : {&usize, &csize, &local}) {
                    if (*field != 0xFFFFFFFFu) continue;
                    if (q + 8 > x + 4 + len)
                        throw Error(path + ": " + e.name + ": ZIP64 extra field is too short");
                    *field = r.u64(q);
                    q += 8;
                }
            }
            x += 4 + len;
        }

        if (flags & 1) throw Error(path + ": " + e.name + ": entry is encrypted, which is not supported");
        if (method != 0) {
            throw Error(path + ": " + e.name + ": entry is compressed (method " + std::to_string(method) +
                        "); only stored entries, as torch.save writes them, are supported");
        }
        if (csize != usize) {
            throw Error(path + ": " + e.name + ": stored entry has compressed size " + std::to_string(csize) +
                        " but uncompressed size " + std::to_string(usize));
        }
        r.need(local, kLocalSize, "local header");
        if (r.u32(local) != kLocalSig) {
            throw Error(path + ": " + e.name + ": no local header at offset " + std::to_string(local));
        }
        e.data_offset = local + kLocalSize + r.u16(local + 26) + r.u16(local + 28);
        e.size = usize;
        r.need(e.data_offset, e.size, (e.name + " data").c_str());
        if (!names.insert(e.name).second) throw Error(path + ": entry '" + e.name + "' appears twice");
        entries_.push_back(std::move(e));
        p += kCentralSize + nlen + elen + clen;
    }
}

const ZipArchive::Entry* ZipArchive::find(std::string_view name) const {
    const auto it =
        std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; });
    return it == entries_.end() ? nullptr : &*it;
}

std::span<const uint8_t> ZipArchive::data(const Entry& e) const {
    const std::span<const uint8_t> d = file_.bytes().subspan(e.data_offset, e.size);
    const uint32_t got = crc32(d);
    if (got != e.crc32) {
        throw Error(path() + ": " + e.name + ": CRC-32 is " + std::to_string(got) + ", the directory says " +
                    std::to_string(e.crc32) + " (corrupt file)");
    }
    return d;
}

}  // namespace microlm
