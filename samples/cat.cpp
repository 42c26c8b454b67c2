// ringshard-cat: write files to standard output through io_uring.
//
//   ringshard-cat FILE...
//
// Each file is opened, measured (statx) and closed through the ring. A
// regular file is read in chunks of up to 256 KiB with several reads in
// flight; the chunks are written to fd 1 strictly in order, one write at a
// time, continuing after short writes. Anything else (a pipe, a character
// device, a /proc file) is copied one read at a time until end of file.
// A file that cannot be read is reported on stderr; the others are still
// copied and the exit status is 1.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "ringshard/framework/uring.hpp"

namespace {

using namespace ringshard::uring;

constexpr std::size_t kChunk = 256 * 1024;
constexpr unsigned kReadsInFlight = 4;
constexpr std::uint64_t kFilePosition = ~std::uint64_t{0};  // offset -1: the fd's own position
constexpr int kStdout = 1;

/// A failure with the errno that caused it and what was being done.
struct Failure {
  int error;
  std::string what;
  bool output;  ///< the failure is on stdout: give up on everything
};

class Cat {
 public:
  Cat() : ring_(2 * kReadsInFlight + 2) {
    for (auto& s : slots_) s.buf.resize(kChunk);
  }

  /// Copies one file; returns false (after reporting) if it failed.
  bool copy(const std::string& path) {
    try {
      const int fd = open(path);
      try {
        copy_fd(fd, path);
      } catch (const Failure&) {
        drain();
        close(fd);
        throw;
      }
      close(fd);
      return true;
    } catch (const Failure& f) {
      // A reader that went away (`ringshard-cat big | head`) is not worth a message.
      if (!(f.output && f.error == EPIPE))
        std::fprintf(stderr, "ringshard-cat: %s: %s\n", f.what.c_str(), std::strerror(f.error));
      if (f.output) throw;
      return false;
    }
  }

 private:
  struct Slot {
    std::vector<char> buf;
    std::uint64_t offset = 0;
    std::size_t want = 0;  ///< bytes this chunk should hold
    std::size_t got = 0;   ///< bytes read so far
    bool ready = false;  ///< read finished; waiting for its turn to be written
    bool eof = false;    ///< the file ended early (it shrank while being read)
  };

  // user_data: slot index for reads, kWriteTag for the write.
  static constexpr std::uint64_t kWriteTag = 1000;

  io_uring_sqe* sqe() {
    io_uring_sqe* s = ring_.get_sqe();
    if (!s) {
      ring_.submit();
      s = ring_.get_sqe();
    }
    if (!s) throw Failure{EBUSY, "submission queue full", true};
    return s;
  }

  io_uring_cqe wait() {
    io_uring_cqe* cqe = nullptr;
    int ret = ring_.submit_and_wait(1);
    if (ret < 0 && ret != -EINTR) throw Failure{-ret, "io_uring_enter", true};
    do {
      ret = ring_.wait_cqe(&cqe);
    } while (ret == -EINTR);
    if (ret < 0) throw Failure{-ret, "io_uring_enter", true};
    const io_uring_cqe copy = *cqe;
    ring_.cqe_seen(cqe);
    --in_flight_;
    return copy;
  }

  /// One request, synchronously.
  int run_one(io_uring_sqe* s) {
    sqe_set_data64(s, kWriteTag + 1);
    ++in_flight_;
    return wait().res;
  }

  void drain() noexcept {
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      ring_.submit();
      if (ring_.wait_cqe(&cqe) != 0) return;
      ring_.cqe_seen(cqe);
      --in_flight_;
    }
  }

  int open(const std::string& path) {
    io_uring_sqe* s = sqe();
    prep_openat(s, AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC, 0);
    const int fd = run_one(s);
    if (fd < 0) throw Failure{-fd, path, false};
    return fd;
  }

  void close(int fd) {
    io_uring_sqe* s = sqe();
    prep_close(s, fd);
    run_one(s);
  }

  void copy_fd(int fd, const std::string& path) {
    struct statx stx {};
    io_uring_sqe* s = sqe();
    prep_statx(s, fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, &stx);
    const int ret = run_one(s);
    if (ret < 0) throw Failure{-ret, path, false};
    if (S_ISDIR(stx.stx_mode)) throw Failure{EISDIR, path, false};
    if (S_ISREG(stx.stx_mode) && stx.stx_size > 0) {
      copy_regular(fd, path, stx.stx_size);
    } else {
      copy_stream(fd, path);
    }
  }

  /// Writes all of `data` to stdout, continuing after short writes.
  void write_out(const char* data, std::size_t len) {
    while (len > 0) {
      io_uring_sqe* s = sqe();
      prep_write(s, kStdout, ConstBuffer(data, len), kFilePosition);
      sqe_set_data64(s, kWriteTag);
      ++in_flight_;
      const io_uring_cqe cqe = wait_for(kWriteTag);
      if (cqe.res < 0) throw Failure{-cqe.res, "write error", true};
      if (cqe.res == 0) throw Failure{EIO, "write returned 0", true};
      data += cqe.res;
      len -= static_cast<std::size_t>(cqe.res);
    }
  }

  /// Waits until the CQE tagged `tag` arrives; read completions met on the
  /// way are recorded in their slots.
  io_uring_cqe wait_for(std::uint64_t tag) {
    for (;;) {
      const io_uring_cqe cqe = wait();
      if (cqe.user_data == tag) return cqe;
      on_read(cqe);
    }
  }

  void on_read(const io_uring_cqe& cqe) {
    if (cqe.user_data >= kReadsInFlight) return;  // not a chunk read
    Slot& slot = slots_[cqe.user_data];
    if (cqe.res < 0) {
      read_error_ = -cqe.res;
      slot.ready = true;
      return;
    }
    if (cqe.res == 0) {  // the file shrank: this chunk ends here
      slot.want = slot.got;
      slot.eof = true;
      slot.ready = true;
      return;
    }
    slot.got += static_cast<std::size_t>(cqe.res);
    if (slot.got < slot.want) {
      issue_read(static_cast<unsigned>(cqe.user_data));  // short read: continue it
    } else {
      slot.ready = true;
    }
  }

  void issue_read(unsigned index) {
    Slot& slot = slots_[index];
    io_uring_sqe* s = sqe();
    prep_read(s, current_fd_, MutableBuffer(slot.buf.data() + slot.got, slot.want - slot.got),
              slot.offset + slot.got);
    sqe_set_data64(s, index);
    ++in_flight_;
  }

  void copy_regular(int fd, const std::string& path, std::uint64_t size) {
    current_fd_ = fd;
    read_error_ = 0;
    const std::uint64_t chunks = (size + kChunk - 1) / kChunk;
    std::uint64_t next_read = 0;
    for (std::uint64_t next_write = 0; next_write < chunks; ++next_write) {
      // Keep up to kReadsInFlight chunks read ahead of the writer.
      while (next_read < chunks && next_read < next_write + kReadsInFlight) {
        const auto index = static_cast<unsigned>(next_read % kReadsInFlight);
        Slot& slot = slots_[index];
        slot.offset = next_read * kChunk;
        slot.want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size - slot.offset));
        slot.got = 0;
        slot.ready = false;
        slot.eof = false;
        issue_read(index);
        ++next_read;
      }
      Slot& slot = slots_[next_write % kReadsInFlight];
      while (!slot.ready) on_read(wait());
      if (read_error_ != 0) throw Failure{read_error_, path, false};
      write_out(slot.buf.data(), slot.want);
      if (slot.eof) break;  // what followed is gone
    }
    drain();  // reads past an early end of file
  }

  void copy_stream(int fd, const std::string& path) {
    std::vector<char>& buf = slots_[0].buf;
    for (;;) {
      io_uring_sqe* s = sqe();
      prep_read(s, fd, buf, kFilePosition);
      const int n = run_one(s);
      if (n < 0) throw Failure{-n, path, false};
      if (n == 0) return;
      write_out(buf.data(), static_cast<std::size_t>(n));
    }
  }

  Ring ring_;
  Slot slots_[kReadsInFlight];
  unsigned in_flight_ = 0;
  int current_fd_ = -1;
  int read_error_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ringshard-cat FILE...\n");
    return 2;
  }
  // A closed stdout shows up as -EPIPE in the write's CQE.
  ::signal(SIGPIPE, SIG_IGN);
  try {
    Cat cat;
    int status = 0;
    for (int i = 1; i < argc; ++i) {
      if (!cat.copy(argv[i])) status = 1;
    }
    return status;
  } catch (const Failure&) {
    return 1;  // already reported
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-cat: %s\n", e.what());
    return 1;
  }
}
