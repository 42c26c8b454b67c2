// Probe: which opcodes the running kernel supports (IORING_REGISTER_PROBE).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace ringshard::uring {

class Probe {
 public:
  Probe() = default;
  /// Built from the kernel's answer: the last opcode it knows and the per-opcode flags.
  Probe(unsigned last_op, const std::array<std::uint16_t, 256>& op_flags) noexcept
      : last_op_(last_op), op_flags_(op_flags) {}
  /// io_uring_opcode_supported.
  [[nodiscard]] bool opcode_supported(unsigned op) const noexcept {
    return op <= last_op_ && op < op_flags_.size() && (op_flags_[op] & 1U /*IO_URING_OP_SUPPORTED*/);
  }
  /// The highest opcode number the kernel knows.
  [[nodiscard]] unsigned last_op() const noexcept { return last_op_; }

 private:
  unsigned last_op_ = 0;
  std::array<std::uint16_t, 256> op_flags_{};
};

/// io_uring_get_probe: probes with a small temporary ring. Throws std::system_error
/// when io_uring is unavailable.
Probe probe();

/// The kernel's name of an opcode ("READ", "SEND_ZC", ...) or "UNKNOWN".
std::string_view opcode_name(unsigned op) noexcept;

}  // namespace ringshard::uring
