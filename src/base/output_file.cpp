// OutputFile: check the target, write a temporary file beside it, rename it into place.
#include "microlm/output_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "microlm/error.h"

namespace microlm {
namespace {

namespace fs = std::filesystem;

std::string what_it_is(fs::file_type t) {
    switch (t) {
        case fs::file_type::directory:
            return "a directory";
        case fs::file_type::character:
            return "a character device";
        case fs::file_type::block:
            return "a block device";
        case fs::file_type::fifo:
            return "a FIFO";
        case fs::file_type::socket:
            return "a socket";
        default:
            return "not a regular file";
    }
}

}  // namespace

std::string checked_output_target(const std::string& path) {
    if (path.empty()) throw Error("an output path is empty");
    std::error_code ec;
    // Follows the symlink chain of the last component, a dangling link to the file it names
    // (the folders on the way may be links too: rename works through them).
    fs::path target(path);
    for (int hops = 0; fs::is_symlink(fs::symlink_status(target, ec)); ++hops) {
        if (hops == 40) throw Error(path + ": too many levels of symbolic links");
        const fs::path next = fs::read_symlink(target, ec);
        if (ec) throw Error(path + ": cannot read the symbolic link: " + ec.message());
        target = next.is_absolute() ? next : target.parent_path() / next;
    }
    target = target.lexically_normal();
    const fs::file_status st = fs::status(target, ec);
    if (!ec && fs::exists(st) && !fs::is_regular_file(st)) {
        throw Error(path + ": is " + what_it_is(st.type()) +
                    "; microlm writes only regular files (a symlink is followed to its target)");
    }
    return target.string();
}

OutputFile::OutputFile(const std::string& path) : path_(path), target_(checked_output_target(path)) {
    tmp_ = target_ + ".tmp." + std::to_string(::getpid());
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) {
        throw Error(path_ + ": cannot create " + tmp_ + " (" + std::strerror(errno) + "); does its folder exist?");
    }
}

OutputFile::~OutputFile() {
    if (!committed_) discard();
}

void OutputFile::discard() noexcept {
    if (f_) std::fclose(f_);
    f_ = nullptr;
    std::error_code ec;
    fs::remove(tmp_, ec);
}

void OutputFile::write(const void* data, size_t n) {
    if (!f_) throw Error(path_ + ": write after commit");
    if (n > 0 && std::fwrite(data, 1, n, f_) != n) {
        const int e = errno;
        discard();
        throw Error(path_ + ": write failed (" + std::strerror(e) + "); nothing was replaced");
    }
}

void OutputFile::commit() {
    if (!f_) throw Error(path_ + ": committed twice");
    const bool flushed = std::fflush(f_) == 0;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!flushed || !closed) {
        discard();
        throw Error(path_ + ": write failed (disk full?); nothing was replaced");
    }
    std::error_code ec;
    fs::rename(tmp_, target_, ec);
    if (ec) {
        discard();
        throw Error(path_ + ": cannot rename the temporary file into place: " + ec.message());
    }
    committed_ = true;
}

void write_output_file(const std::string& path, std::string_view bytes) {
    OutputFile f(path);
    f.write(bytes);
    f.commit();
}

}  // namespace microlm
