// OutputFile: the one way microlm writes a file the user named (-o, --out): only to a regular
// file, never half-written. Symlinks are followed deliberately: the file they point to is
// replaced and the link stays. A directory, device, FIFO or socket is refused before anything is
// written. Bytes go to a temporary file beside the target, renamed over it by commit(); a
// failure, or destruction without commit(), removes the temporary file and leaves the target
// as it was.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

namespace microlm {

class OutputFile {
public:
    // Throws microlm::Error naming `path` when it may not be written (what it is instead) or
    // the temporary file cannot be created (e.g. its folder does not exist).
    explicit OutputFile(const std::string& path);
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    // Throws on a short write (disk full, quota), naming the path.
    void write(const void* data, size_t n);
    void write(std::string_view s) { write(s.data(), s.size()); }
    // Flushes, closes and renames into place; throws (and replaces nothing) on any failure.
    void commit();

    const std::string& path() const { return path_; }      // as given
    const std::string& target() const { return target_; }  // the file replaced (symlinks followed)

private:
    void discard() noexcept;

    std::string path_, target_, tmp_;
    std::FILE* f_ = nullptr;
    bool committed_ = false;
};

// The whole of `bytes` into `path` through an OutputFile.
void write_output_file(const std::string& path, std::string_view bytes);

// Throws unless `path` is absent or a regular file (symlinks followed): what -o may replace.
// Returns the path with symlinks resolved.
std::string checked_output_target(const std::string& path);

}  // namespace microlm
