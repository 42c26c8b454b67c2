// Uses the installed headers and library: one NOP through a Ring.
#include <cstdio>
#include <system_error>

#include "ringshard/framework/uring.hpp"

int main() {
  try {
    ringshard::uring::Ring ring(4);
    io_uring_sqe* sqe = ring.get_sqe();
    ringshard::uring::prep_nop(sqe);
    ringshard::uring::sqe_set_data64(sqe, 42);
    if (ring.submit() != 1) return 1;
    io_uring_cqe* cqe = nullptr;
    if (ring.wait_cqe(&cqe) != 0) return 1;
    const bool ok = cqe->res == 0 && cqe->user_data == 42;
    ring.cqe_seen(cqe);
    std::printf("installed ringshard: NOP %s\n", ok ? "completed" : "failed");
    return ok ? 0 : 1;
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
