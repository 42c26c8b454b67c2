// Replaces the global allocation functions by counting ones: `allocations`
// counts the calls made on this thread while `counting` is true, and
// `allocated_bytes` the bytes they asked for. Include it in
// exactly one source file of a test binary (it defines the replacements).
#pragma once

#include <cstdlib>
#include <new>

namespace {
thread_local bool counting = false;
thread_local std::size_t allocations = 0;
thread_local std::size_t allocated_bytes = 0;

void* counted_alloc(std::size_t n) {
  if (counting) {
    ++allocations;
    allocated_bytes += n;
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

// Every non-aligned form, so that each new pairs with a matching delete
// (the sanitizers check the pairing).
void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (counting) {
    ++allocations;
    allocated_bytes += n;
  }
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
// Not inlined: where g++ inlines one into a caller that got its pointer from
// the (not inlined) new above, it sees free() on a pointer from new and
// warns (-Wmismatched-new-delete, at -O1).
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
