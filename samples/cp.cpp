// ringshard-cp: copy a file with linked read->write pairs through io_uring.
//
//   ringshard-cp [--qd N] [--bs BYTES] SRC DST
//
// The file is cut into blocks of --bs bytes (default 128 KiB; K, M and G
// suffixes are accepted). Each block is one READ linked (IOSQE_IO_LINK) to a
// WRITE of the same buffer at the same offset, so the kernel starts the write
// as soon as the read is done, and up to --qd pairs (default 16) are in
// flight at once. A read that comes back short breaks its link (the write is
// cancelled): the bytes that did arrive are written on their own and the rest
// of the block is read again. A short write is continued from where it
// stopped. If the source turns out shorter than it was when measured, the
// copy ends where the source ended.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "common/cli.hpp"
#include "ringshard/framework/uring.hpp"

namespace {

using namespace ringshard::uring;

struct Failure {
  int error;
  std::string what;
};

struct Options {
  unsigned queue_depth = 16;
  std::size_t block_size = 128 * 1024;
  std::string src;
  std::string dst;
};

void parse_args(int argc, char** argv, Options& opt) {
  ringshard::samples::CommandLine app("ringshard-cp: copy a file with linked read->write pairs through io_uring",
                                      "ringshard-cp");
  app.option("--qd", opt.queue_depth, "read->write pairs in flight").range(1u, 4096u).show_default();
  app.size("--bs", opt.block_size, "block size (bytes, K/M/G)").range(std::size_t{1}, std::size_t{1} << 30);
  app.option("SRC", opt.src, "the file to copy").required();
  app.option("DST", opt.dst, "where to copy it").required();
  app.parse_or_exit(argc, argv);
}

class Copier {
 public:
  Copier(const Options& opt, int src, int dst, std::uint64_t size)
      : ring_(2 * opt.queue_depth), block_(opt.block_size), src_(src), dst_(dst), size_(size),
        slots_(opt.queue_depth) {
    for (auto& s : slots_) s.buf.resize(block_);
  }

  /// Runs the copy; returns the number of bytes the destination should have.
  std::uint64_t run() {
    for (unsigned i = 0; i < slots_.size(); ++i) start_block(i);
    while (active_ > 0) {
      io_uring_cqe* cqe = nullptr;
      int ret = ring_.submit_and_wait(1);
      if (ret < 0 && ret != -EINTR) fail(-ret, "io_uring_enter");
      do {
        ret = ring_.wait_cqe(&cqe);
      } while (ret == -EINTR);
      if (ret < 0) fail(-ret, "io_uring_enter");
      const io_uring_cqe copy = *cqe;
      ring_.cqe_seen(cqe);
      --in_flight_;
      on_cqe(copy);
    }
    return end_;
  }

  /// Reaps whatever is still in flight (after a failure), so no buffer is
  /// freed while the kernel may still use it.
  void drain() noexcept {
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      ring_.submit();
      if (ring_.wait_cqe(&cqe) != 0) return;
      ring_.cqe_seen(cqe);
      --in_flight_;
    }
  }

 private:
  struct Slot {
    std::vector<char> buf;
    std::uint64_t offset = 0;  ///< file offset of buf[0]
    std::size_t len = 0;       ///< bytes of the block still to be read (from buf[0])
    std::size_t got = 0;       ///< bytes of the current read that arrived (short read)
    std::size_t written = 0;   ///< bytes of the current write done (short write)
    int pending = 0;           ///< CQEs still expected for this slot
    bool short_read = false;
    bool active = false;
  };

  // user_data: slot index * 2, +1 for the write.
  static std::uint64_t tag(unsigned slot, bool write) { return std::uint64_t{slot} * 2 + (write ? 1 : 0); }

  [[noreturn]] static void fail(int error, const std::string& what) { throw Failure{error, what}; }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = ring_.get_sqe();
    if (!s) {
      ring_.submit();
      s = ring_.get_sqe();
    }
    if (!s) fail(EBUSY, "submission queue full");
    ++in_flight_;
    return s;
  }

  /// Takes the next block of the file into slot `i`, if any is left.
  void start_block(unsigned i) {
    Slot& slot = slots_[i];
    if (next_offset_ >= size_ || eof_) {
      if (slot.active) {
        slot.active = false;
        --active_;
      }
      return;
    }
    if (!slot.active) {
      slot.active = true;
      ++active_;
    }
    slot.offset = next_offset_;
    slot.len = static_cast<std::size_t>(std::min<std::uint64_t>(block_, size_ - next_offset_));
    next_offset_ += slot.len;
    submit_pair(i);
  }

  /// READ slot.len bytes into buf, linked to a WRITE of the same bytes.
  void submit_pair(unsigned i) {
    Slot& slot = slots_[i];
    slot.got = 0;
    slot.written = 0;
    slot.short_read = false;
    io_uring_sqe* r = sqe();
    prep_read(r, src_, MutableBuffer(slot.buf.data(), slot.len), slot.offset);
    sqe_set_flags(r, IOSQE_IO_LINK);
    sqe_set_data64(r, tag(i, false));
    io_uring_sqe* w = sqe();
    prep_write(w, dst_, ConstBuffer(slot.buf.data(), slot.len), slot.offset);
    sqe_set_data64(w, tag(i, true));
    slot.pending = 2;
  }

  /// A plain WRITE of buf[written, count) (after a short read or a short write).
  void submit_write(unsigned i, std::size_t count) {
    Slot& slot = slots_[i];
    io_uring_sqe* w = sqe();
    prep_write(w, dst_, ConstBuffer(slot.buf.data() + slot.written, count - slot.written),
               slot.offset + slot.written);
    sqe_set_data64(w, tag(i, true));
    slot.pending = 1;
  }

  void on_cqe(const io_uring_cqe& cqe) {
    const auto i = static_cast<unsigned>(cqe.user_data / 2);
    const bool is_write = cqe.user_data % 2 == 1;
    Slot& slot = slots_[i];
    --slot.pending;

    if (!is_write) {
      if (cqe.res < 0) fail(-cqe.res, "read error at offset " + std::to_string(slot.offset));
      if (static_cast<std::size_t>(cqe.res) < slot.len) {
        // Short: the linked write is cancelled; its CQE follows.
        slot.short_read = true;
        slot.got = static_cast<std::size_t>(cqe.res);
      }
      return;
    }

    if (slot.short_read) {
      // The linked write was cancelled (-ECANCELED). Whatever it did, the
      // block is redone from the bytes that arrived.
      if (cqe.res < 0 && cqe.res != -ECANCELED)
        fail(-cqe.res, "write error at offset " + std::to_string(slot.offset));
      slot.short_read = false;
      if (slot.got == 0) {
        // End of file before the size measured at the start: stop here.
        eof_ = true;
        if (slot.offset < end_) end_ = slot.offset;
        start_block(i);
        return;
      }
      // Write what arrived; the rest of the block is read again after it.
      slot.written = 0;
      submit_write(i, slot.got);
      return;
    }
    if (cqe.res < 0) fail(-cqe.res, "write error at offset " + std::to_string(slot.offset + slot.written));
    if (cqe.res == 0) fail(EIO, "write made no progress at offset " + std::to_string(slot.offset + slot.written));

    slot.written += static_cast<std::size_t>(cqe.res);
    const std::size_t target = slot.got != 0 ? slot.got : slot.len;
    if (slot.written < target) {
      submit_write(i, target);  // short write: continue it
      return;
    }
    if (slot.got != 0 && slot.got < slot.len) {
      // The bytes of a short read are on disk; read the rest of the block.
      slot.offset += slot.got;
      slot.len -= slot.got;
      submit_pair(i);
      return;
    }
    start_block(i);
  }

  Ring ring_;
  std::size_t block_;
  int src_;
  int dst_;
  std::uint64_t size_;
  std::uint64_t end_ = UINT64_MAX;  ///< lowest offset where the source ended early
  std::uint64_t next_offset_ = 0;
  std::vector<Slot> slots_;
  unsigned active_ = 0;
  unsigned in_flight_ = 0;
  bool eof_ = false;
};

/// One synchronous request on a small ring (open, statx, ftruncate, close).
int run_one(Ring& ring, auto&& prep) {
  io_uring_sqe* s = ring.get_sqe();
  if (!s) return -EBUSY;
  prep(s);
  io_uring_cqe* cqe = nullptr;
  int ret = ring.submit_and_wait(1);
  if (ret < 0) return ret;
  do {
    ret = ring.wait_cqe(&cqe);
  } while (ret == -EINTR);
  if (ret < 0) return ret;
  const int res = cqe->res;
  ring.cqe_seen(cqe);
  return res;
}

int copy_file(const Options& opt) {
  Ring ring(4);
  const int src = run_one(ring, [&](io_uring_sqe* s) {
    prep_openat(s, AT_FDCWD, opt.src.c_str(), O_RDONLY | O_CLOEXEC, 0);
  });
  if (src < 0) throw Failure{-src, "cannot open '" + opt.src + "'"};

  struct statx stx {};
  int ret = run_one(ring, [&](io_uring_sqe* s) {
    prep_statx(s, src, "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_INO, &stx);
  });
  if (ret < 0) throw Failure{-ret, "cannot stat '" + opt.src + "'"};
  if (!S_ISREG(stx.stx_mode)) throw Failure{EINVAL, "'" + opt.src + "' is not a regular file"};

  struct statx existing {};
  ret = run_one(ring, [&](io_uring_sqe* s) {
    prep_statx(s, AT_FDCWD, opt.dst.c_str(), 0, STATX_INO, &existing);
  });
  if (ret == 0 && existing.stx_ino == stx.stx_ino && existing.stx_dev_major == stx.stx_dev_major &&
      existing.stx_dev_minor == stx.stx_dev_minor) {
    throw Failure{EINVAL, "'" + opt.src + "' and '" + opt.dst + "' are the same file"};
  }

  const int dst = run_one(ring, [&](io_uring_sqe* s) {
    prep_openat(s, AT_FDCWD, opt.dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, stx.stx_mode & 07777);
  });
  if (dst < 0) throw Failure{-dst, "cannot open '" + opt.dst + "' for writing"};

  Copier copier(opt, src, dst, stx.stx_size);
  std::uint64_t end = 0;
  try {
    end = copier.run();
  } catch (const Failure&) {
    copier.drain();
    throw;
  }
  if (end != UINT64_MAX) {
    // The source shrank during the copy: cut the destination where it ended.
    if (::ftruncate(dst, static_cast<off_t>(end)) != 0) throw Failure{errno, "cannot truncate '" + opt.dst + "'"};
  }
  run_one(ring, [&](io_uring_sqe* s) { prep_close(s, src); });
  ret = run_one(ring, [&](io_uring_sqe* s) { prep_close(s, dst); });
  if (ret < 0) throw Failure{-ret, "closing '" + opt.dst + "'"};
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  parse_args(argc, argv, opt);
  try {
    return copy_file(opt);
  } catch (const Failure& f) {
    std::fprintf(stderr, "ringshard-cp: %s: %s\n", f.what.c_str(), std::strerror(f.error));
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringshard-cp: %s\n", e.what());
    return 1;
  }
}
