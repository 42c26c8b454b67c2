// ringshard-cat: write files to standard output through io_uring, written
// as a coroutine.
//
//   ringshard-cat FILE...
//
// One task opens, measures (statx), reads and closes each file through the
// ring, and writes what it read to fd 1, continuing after short writes:
// sequential code, each co_await one operation. No runtime: main drives one
// Reactor by hand (ReactorScope), the way a tool does. A file that cannot be
// read is reported on stderr; the others are still copied and the exit
// status is 1. A reader that went away (`ringshard-cat big | head`) ends the
// copy without a message.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "ringshard/framework/reactor.hpp"
#include "ringshard/framework/task.hpp"

namespace {

using namespace ringshard;

constexpr std::size_t kChunk = 256 * 1024;
constexpr std::uint64_t kFilePosition = ~std::uint64_t{0};  // offset -1: the fd's own position
constexpr int kStdout = 1;

struct Status {
  int exit = 0;
  bool output_failed = false;
  std::vector<char> buf = std::vector<char>(kChunk);
};

void report(const char* what, int error) { std::fprintf(stderr, "ringshard-cat: %s: %s\n", what, std::strerror(error)); }

/// Writes all of [data, data + len) to stdout; false when stdout failed.
Task<bool> write_out(const char* data, std::size_t len, Status& st) {
  while (len > 0) {
    const int n = co_await io([&](io_uring_sqe* sqe) {
      uring::prep_write(sqe, kStdout, uring::ConstBuffer(data, len), kFilePosition);
    });
    if (n <= 0) {
      if (n != -EPIPE) report("write error", n < 0 ? -n : EIO);
      st.output_failed = true;
      co_return false;
    }
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  co_return true;
}

/// Copies one file: open, statx, read until the end (regular files, pipes,
/// /proc files alike), close.
Task<> copy(const char* path, Status& st) {
  const int fd = co_await io([&](io_uring_sqe* sqe) { uring::prep_openat(sqe, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0); });
  if (fd < 0) {
    report(path, -fd);
    st.exit = 1;
    co_return;
  }
  struct statx stx {};
  int error = co_await io([&](io_uring_sqe* sqe) {
    uring::prep_statx(sqe, fd, "", AT_EMPTY_PATH, STATX_TYPE, &stx);
  });
  if (error == 0 && S_ISDIR(stx.stx_mode)) error = -EISDIR;
  while (error == 0) {
    const int n = co_await io([&](io_uring_sqe* sqe) {
      uring::prep_read(sqe, fd, uring::MutableBuffer(st.buf.data(), st.buf.size()), kFilePosition);
    });
    if (n <= 0) {
      error = n;
      break;
    }
    if (!co_await write_out(st.buf.data(), static_cast<std::size_t>(n), st)) break;
  }
  if (error < 0) {
    report(path, -error);
    st.exit = 1;
  }
  co_await io([&](io_uring_sqe* sqe) { uring::prep_close(sqe, fd); });
}

Task<> cat(const std::vector<std::string>& files, Status& st) {
  for (std::size_t i = 0; i < files.size() && !st.output_failed; ++i) co_await copy(files[i].c_str(), st);
  if (st.output_failed) st.exit = 1;
}

}  // namespace

int main(int argc, char** argv) {
  samples::CommandLine app("ringshard-cat: write files to standard output through io_uring", "ringshard-cat");
  std::vector<std::string> files;
  app.option("FILE", files, "files to write, in order").required();
  app.parse_or_exit(argc, argv);
  // A closed stdout shows up as -EPIPE in the write's CQE.
  ::signal(SIGPIPE, SIG_IGN);
  try {
    Reactor reactor(ReactorOptions{.sq_entries = 8});
    ReactorScope scope(reactor);
    Status st;
    TaskHandle task = spawn(cat(files, st));
    while (task.running()) reactor.run_once(true);
    return st.exit;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-cat: %s\n", e.what());
    return 1;
  }
}
