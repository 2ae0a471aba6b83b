// OutputFile (base): what `-o` may replace and what a failure leaves behind (issue 13 item 6).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "microlm/error.h"
#include "microlm/output_file.h"

namespace fs = std::filesystem;
using namespace microlm;

namespace {

fs::path scratch(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("microlm_output_" + std::to_string(::getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::string read(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

size_t entries(const fs::path& d) {
    return static_cast<size_t>(std::distance(fs::directory_iterator(d), fs::directory_iterator()));
}

}  // namespace

TEST(OutputFile, WritesAndReplacesARegularFile) {
    const fs::path d = scratch("regular");
    write_output_file((d / "a.txt").string(), "first");
    write_output_file((d / "a.txt").string(), "second");
    EXPECT_EQ(read(d / "a.txt"), "second");
    EXPECT_EQ(entries(d), 1u);  // no temporary file left
}

TEST(OutputFile, RefusesAFifoAndADirectoryAndLeavesThemAlone) {
    const fs::path d = scratch("special");
    const fs::path fifo = d / "pipe";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    try {
        write_output_file(fifo.string(), "x");
        FAIL() << "a FIFO was written";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("FIFO"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::is_fifo(fifo));
    fs::create_directory(d / "dir");
    EXPECT_THROW(write_output_file((d / "dir").string(), "x"), Error);
    EXPECT_TRUE(fs::is_directory(d / "dir"));
    EXPECT_EQ(entries(d), 2u);
}

TEST(OutputFile, FollowsASymlinkToARegularFileAndKeepsTheLink) {
    const fs::path d = scratch("symlink");
    write_output_file((d / "target.txt").string(), "old");
    fs::create_symlink("target.txt", d / "link.txt");
    write_output_file((d / "link.txt").string(), "new");
    EXPECT_TRUE(fs::is_symlink(d / "link.txt"));
    EXPECT_EQ(read(d / "target.txt"), "new");
    // A dangling link is followed too: the file it names is created, the link stays a link.
    fs::create_symlink("made.txt", d / "dangling.txt");
    write_output_file((d / "dangling.txt").string(), "made");
    EXPECT_TRUE(fs::is_symlink(d / "dangling.txt"));
    EXPECT_EQ(read(d / "made.txt"), "made");
    // A link to something that is not a regular file is refused like the thing itself.
    fs::create_directory(d / "dir");
    fs::create_symlink("dir", d / "dirlink");
    EXPECT_THROW(write_output_file((d / "dirlink").string(), "x"), Error);
}

TEST(OutputFile, WithoutCommitNothingIsReplaced) {
    const fs::path d = scratch("abandon");
    write_output_file((d / "keep.txt").string(), "kept");
    {
        OutputFile f((d / "keep.txt").string());
        f.write("half of a new file");
    }
    EXPECT_EQ(read(d / "keep.txt"), "kept");
    EXPECT_EQ(entries(d), 1u);
}

TEST(OutputFile, AMissingFolderIsAClearError) {
    const fs::path d = scratch("missing");
    try {
        write_output_file((d / "no" / "such" / "f.txt").string(), "x");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("folder"), std::string::npos) << e.what();
    }
}

TEST(OutputFile, AFullDeviceFailsTheWriteAndReplacesNothing) {
    if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full here";
    // /dev/full itself is a device, so it is refused before any byte is written.
    EXPECT_THROW(write_output_file("/dev/full", "x"), Error);
}
