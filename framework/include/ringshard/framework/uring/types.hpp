// Small vocabulary types of the uring layer: file references, buffers,
// timespecs. They exist so that a mistake (an fd where a registered index is
// expected, a buffer length that does not match its pointer, a timeout in the
// wrong unit) does not compile.
#pragma once

#include <linux/time_types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace ringshard::uring {

/// An index into the ring's registered file table (not a file descriptor).
struct FixedFile {
  unsigned index;
};

/// The target of an operation: a plain file descriptor or a registered file.
/// Plain `int` converts implicitly; a registered file must be spelled
/// `FixedFile{i}`, and preparing an SQE with it sets IOSQE_FIXED_FILE.
class File {
 public:
  constexpr File(int fd) noexcept : value_(fd), fixed_(false) {}  // NOLINT: implicit by design
  constexpr File(FixedFile f) noexcept : value_(static_cast<int>(f.index)), fixed_(true) {}  // NOLINT
  [[nodiscard]] constexpr int value() const noexcept { return value_; }
  [[nodiscard]] constexpr bool fixed() const noexcept { return fixed_; }

 private:
  int value_;
  bool fixed_;
};

/// A writable byte range: from (pointer, size) or any contiguous range of
/// trivially copyable, non-const elements (std::vector, std::array, std::string, spans).
class MutableBuffer {
 public:
  constexpr MutableBuffer() noexcept = default;
  constexpr MutableBuffer(void* data, std::size_t size) noexcept : data_(data), size_(size) {}
  template <std::ranges::contiguous_range R>
    requires(!std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>> &&
             std::is_trivially_copyable_v<std::ranges::range_value_t<R>> &&
             std::ranges::sized_range<R>)
  constexpr MutableBuffer(R&& r) noexcept  // NOLINT: implicit by design
      : data_(std::ranges::data(r)),
        size_(std::ranges::size(r) * sizeof(std::ranges::range_value_t<R>)) {}
  [[nodiscard]] constexpr void* data() const noexcept { return data_; }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A read-only byte range: everything a MutableBuffer accepts, plus const
/// ranges and string views.
class ConstBuffer {
 public:
  constexpr ConstBuffer() noexcept = default;
  constexpr ConstBuffer(const void* data, std::size_t size) noexcept : data_(data), size_(size) {}
  constexpr ConstBuffer(MutableBuffer b) noexcept : data_(b.data()), size_(b.size()) {}  // NOLINT
  constexpr ConstBuffer(std::string_view s) noexcept : data_(s.data()), size_(s.size()) {}  // NOLINT
  constexpr ConstBuffer(const char* s) noexcept  // NOLINT
      : ConstBuffer(std::string_view(s)) {}
  constexpr ConstBuffer(const std::string& s) noexcept : data_(s.data()), size_(s.size()) {}  // NOLINT
  template <std::ranges::contiguous_range R>
    requires(std::is_trivially_copyable_v<std::ranges::range_value_t<R>> &&
             std::ranges::sized_range<R> &&
             !std::is_convertible_v<R, std::string_view>)
  constexpr ConstBuffer(R&& r) noexcept  // NOLINT: implicit by design
      : data_(std::ranges::data(r)),
        size_(std::ranges::size(r) * sizeof(std::ranges::range_value_t<R>)) {}
  [[nodiscard]] constexpr const void* data() const noexcept { return data_; }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }

 private:
  const void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A kernel timespec built from a std::chrono duration. The kernel reads it
/// when the SQE is submitted, so it must outlive the submit call.
struct Timespec : __kernel_timespec {
  constexpr Timespec() noexcept : __kernel_timespec{0, 0} {}
  template <class Rep, class Period>
  constexpr Timespec(std::chrono::duration<Rep, Period> d) noexcept  // NOLINT: implicit by design
      : __kernel_timespec{0, 0} {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    tv_sec = ns / 1'000'000'000;
    tv_nsec = ns % 1'000'000'000;
  }
};

}  // namespace ringshard::uring
