#include "ringshard/framework/task.hpp"
#include "ringshard/framework/when_all.hpp"

#include <cstdlib>
#include <new>
#include <vector>

#include "ringshard/framework/log.hpp"
#include "ringshard/framework/shard.hpp"

namespace ringshard {

// ---- frame pool ------------------------------------------------------------
//
// Frames are rounded up to 64-byte classes up to 4 KiB; a freed frame goes on
// its class's free list (linked through the frame itself) and is reused by
// the next frame of that class. Larger frames go straight to malloc. Frames
// are freed on the thread that resumes them, which is the thread that made
// them (one shard); a frame freed elsewhere simply joins that thread's lists.

namespace {

constexpr std::size_t kGrain = 64;
constexpr std::size_t kClasses = 64;  // up to 4 KiB

struct FreeFrame {
  FreeFrame* next;
};

struct FramePool {
  FreeFrame* free[kClasses] = {};
  FramePoolStats stats;
  ~FramePool() {
    for (FreeFrame*& head : free) {
      while (head != nullptr) std::free(std::exchange(head, head->next));
    }
  }
};

thread_local FramePool tl_frames;

}  // namespace

namespace detail {

void* frame_alloc(std::size_t size) {
  FramePool& pool = tl_frames;
  ++pool.stats.live;
  const std::size_t cls = (size + kGrain - 1) / kGrain;
  if (cls < kClasses && cls > 0) {
    if (FreeFrame* f = pool.free[cls]) {
      pool.free[cls] = f->next;
      ++pool.stats.reused;
      return f;
    }
    ++pool.stats.allocated;
    void* p = std::malloc(cls * kGrain);
    if (p == nullptr) {
      --pool.stats.live;
      throw std::bad_alloc();
    }
    return p;
  }
  ++pool.stats.allocated;
  void* p = std::malloc(size);
  if (p == nullptr) {
    --pool.stats.live;
    throw std::bad_alloc();
  }
  return p;
}

void frame_free(void* p, std::size_t size) noexcept {
  FramePool& pool = tl_frames;
  --pool.stats.live;
  const std::size_t cls = (size + kGrain - 1) / kGrain;
  if (cls < kClasses && cls > 0) {
    auto* f = static_cast<FreeFrame*>(p);
    f->next = pool.free[cls];
    pool.free[cls] = f;
    return;
  }
  std::free(p);
}

}  // namespace detail

FramePoolStats frame_pool_stats() noexcept { return tl_frames.stats; }

// ---- roots -----------------------------------------------------------------

struct RootList {
  TaskRoot* head = nullptr;
  std::size_t live = 0;
  std::vector<TaskRoot*> spare;  // released roots, reused (generation bumped)
  ~RootList() {
    TaskRoot::abandon_all();
    for (TaskRoot* r : spare) delete r;
  }
  void link(TaskRoot* r) noexcept {
    r->prev_ = nullptr;
    r->next_ = head;
    if (head != nullptr) head->prev_ = r;
    head = r;
    ++live;
  }
  void unlink(TaskRoot* r) noexcept {
    if (r->prev_ != nullptr) r->prev_->next_ = r->next_;
    else head = r->next_;
    if (r->next_ != nullptr) r->next_->prev_ = r->prev_;
    r->prev_ = r->next_ = nullptr;
    --live;
  }
};

namespace {
thread_local RootList tl_roots;
}

std::size_t live_tasks() noexcept { return tl_roots.live; }

TaskRoot* TaskRoot::start(std::coroutine_handle<> top, void (*set_root)(std::coroutine_handle<>, TaskRoot*)) {
  RootList& list = tl_roots;
  TaskRoot* r;
  if (!list.spare.empty()) {
    r = list.spare.back();
    list.spare.pop_back();
  } else {
    r = new TaskRoot();
  }
  r->top_ = top;
  r->pending_ = nullptr;
  r->cancelled_ = r->stopping_ = r->in_kernel_ = r->ending_ = false;
  r->end_hook_ = nullptr;
  r->end_context_ = nullptr;
  list.link(r);
  set_root(top, r);
  return r;
}

TaskRoot::Admit TaskRoot::suspend_in(Suspension& leaf) noexcept {
  if (stopping_) {
    // Parked: destroyed from the run queue, once this suspension completed.
    pending_ = &leaf;
    Shard* shard = Shard::current();
    if (shard != nullptr) {
      shard->post([this, gen = generation_] {
        if (generation_ == gen && !done() && stopping_ && !in_kernel_) destroy_frames();
      });
    }
    return Admit::parked;
  }
  if (cancelled_) return Admit::cancelled;
  pending_ = &leaf;
  ++suspensions_;
  return Admit::proceed;
}

void TaskRoot::cancel() noexcept {
  if (done() || cancelled_ || stopping_) return;
  cancelled_ = true;
  Suspension* leaf = pending_;
  if (leaf == nullptr) return;  // running, or in an await that is not a leaf: later awaits fail
  if (!leaf->cancel()) {
    in_kernel_ = true;  // the CQE resumes it, through settled()
    return;
  }
  // Resumed from the run queue, not from inside the caller of cancel().
  Shard* shard = Shard::current();
  if (shard == nullptr) return;
  shard->post([this, gen = generation_, n = suspensions_, leaf] {
    if (generation_ != gen || suspensions_ != n || done() || pending_ != leaf || stopping_) return;
    pending_ = nullptr;
    leaf->resume_cancelled();
  });
}

void TaskRoot::stop() noexcept {
  if (done() || stopping_) return;
  stopping_ = true;
  Suspension* leaf = pending_;
  if (leaf == nullptr) return;  // running: parked at its next await
  if (in_kernel_) return;       // already cancelling: settled() destroys
  if (!leaf->cancel()) {
    in_kernel_ = true;
    return;
  }
  destroy_frames();
}

bool TaskRoot::settled() noexcept {
  in_kernel_ = false;
  if (!stopping_) return true;
  destroy_frames();
  return false;
}

void TaskRoot::finished(std::exception_ptr error) noexcept {
  // From the top frame's final suspend: the frame is suspended and may go.
  end(std::move(error));
}

void TaskRoot::destroy_frames() noexcept { end(nullptr); }

void TaskRoot::end(std::exception_ptr error) noexcept {
  if (ending_ || done()) return;
  ending_ = true;
  pending_ = nullptr;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (...) {
      log_current_exception("task");
    }
  }
  if (end_hook_ != nullptr) end_hook_(end_context_, error);
  // Destroying the top frame destroys the tasks it awaits (their Task
  // objects live in it) and the locals of all of them.
  std::exchange(top_, {}).destroy();
  release();
}

void TaskRoot::release() noexcept {
  tl_roots.unlink(this);
  ++generation_;
  ending_ = false;
  try {
    tl_roots.spare.push_back(this);
  } catch (...) {
    delete this;
  }
}

void stop_all_tasks() noexcept {
  // Stopping one may end others (through end hooks): walk from the head
  // again after each.
  for (;;) {
    TaskRoot* r = tl_roots.head;
    while (r != nullptr && (r->stopping() || r->done())) r = r->next_;
    if (r == nullptr) return;
    r->stop();
  }
}

std::size_t TaskRoot::abandon_all() noexcept {
  std::size_t left = 0;
  for (;;) {
    TaskRoot* r = tl_roots.head;
    while (r != nullptr && r->in_kernel_) r = r->next_;
    if (r == nullptr) break;
    r->stopping_ = true;
    r->destroy_frames();
  }
  for (TaskRoot* r = tl_roots.head; r != nullptr; r = r->next_) ++left;
  if (left > 0) RINGSHARD_LOG_ERROR("{} tasks left with an operation in the kernel; their frames are not freed", left);
  return left;
}

namespace {
template <class Promise>
void set_root(std::coroutine_handle<> h, TaskRoot* root) {
  std::coroutine_handle<Promise>::from_address(h.address()).promise().root = root;
}
}  // namespace

TaskHandle spawn(Task<> task, TaskRoot::EndHook hook, void* context) {
  auto h = task.release();
  if (!h) return {};
  TaskRoot* root = TaskRoot::start(h, &set_root<Task<>::promise_type>);
  root->on_end(hook, context);
  TaskHandle handle(root);
  h.resume();
  return handle;
}

TaskHandle spawn(Task<> task) { return spawn(std::move(task), nullptr, nullptr); }

namespace {
// A task on its way to a shard: destroyed unstarted if the job never runs.
struct Unstarted {
  Task<>::Handle h;
  explicit Unstarted(Task<>::Handle handle) noexcept : h(handle) {}
  Unstarted(Unstarted&& o) noexcept : h(std::exchange(o.h, {})) {}
  Unstarted& operator=(Unstarted&&) = delete;
  ~Unstarted() {
    if (h) h.destroy();
  }
};
}  // namespace

void spawn(Shard& shard, Task<> task) {
  Unstarted u(task.release());
  if (!u.h) return;
  shard.post([u = std::move(u)]() mutable { spawn(Task<>(std::exchange(u.h, {}))); });
}

namespace {
thread_local Reactor* tl_scoped_reactor = nullptr;
}

ReactorScope::ReactorScope(Reactor& reactor) noexcept : previous_(std::exchange(tl_scoped_reactor, &reactor)) {}
ReactorScope::~ReactorScope() { tl_scoped_reactor = previous_; }

Reactor& current_reactor() {
  if (Shard* shard = Shard::current()) return shard->reactor();
  if (tl_scoped_reactor != nullptr) return *tl_scoped_reactor;
  throw std::logic_error("ringshard: an await outside a shard thread");
}

// ---- sleep -----------------------------------------------------------------

SleepAwait::~SleepAwait() {
  if (reactor_ != nullptr && scheduled()) reactor_->cancel(*this);
}

bool SleepAwait::suspend(std::coroutine_handle<> h, TaskRoot* root) {
  root_ = root;
  if (root_ != nullptr) {
    const TaskRoot::Admit admit = root_->suspend_in(*this);
    if (admit == TaskRoot::Admit::cancelled) {
      result_ = std::make_error_code(std::errc::operation_canceled);
      return false;
    }
    if (admit == TaskRoot::Admit::parked) return true;
  }
  h_ = h;
  reactor_ = &current_reactor();
  reactor_->schedule(*this, deadline_);
  return true;
}

void SleepAwait::fire() {
  if (root_ != nullptr) root_->resumed();
  h_.resume();
}

bool SleepAwait::cancel() noexcept {
  if (reactor_ != nullptr) reactor_->cancel(*this);
  return true;
}

bool YieldAwait::suspend(std::coroutine_handle<> h, TaskRoot* root) {
  Shard* shard = Shard::current();
  if (shard == nullptr) throw std::logic_error("ringshard: an await outside a shard thread");
  h_ = h;
  if (root == nullptr) {
    shard->post([h] { h.resume(); });
    return true;
  }
  const TaskRoot::Admit admit = root->suspend_in(*this);
  if (admit == TaskRoot::Admit::cancelled) {
    result_ = std::make_error_code(std::errc::operation_canceled);
    return false;
  }
  if (admit == TaskRoot::Admit::parked) return true;
  // The job resumes only this suspension: a cancel or stop meanwhile has
  // resumed or destroyed it (and the root may run another task by then).
  shard->post([root, gen = root->generation(), n = root->suspensions(), this] {
    if (root->generation() != gen || root->suspensions() != n || root->pending() != this) return;
    root->resumed();
    h_.resume();
  });
  return true;
}

void YieldAwait::resume_cancelled() noexcept {
  result_ = std::make_error_code(std::errc::operation_canceled);
  h_.resume();
}

void SleepAwait::resume_cancelled() noexcept {
  result_ = std::make_error_code(std::errc::operation_canceled);
  h_.resume();
}

// ---- when_all --------------------------------------------------------------

namespace detail {

bool Gather::suspend(std::coroutine_handle<> h, TaskRoot* root) noexcept {
  h_ = h;
  root_ = root;
  if (root_ != nullptr) {
    const TaskRoot::Admit admit = root_->suspend_in(*this);
    if (admit == TaskRoot::Admit::cancelled) return false;  // nothing started: no values
    if (admit == TaskRoot::Admit::parked) return true;
  }
  remaining_ = children_.size();
  // A child may end while starting: remaining_ cannot reach 0 before the
  // last one started, and armed_ is off meanwhile.
  for (std::size_t i = 0; i < children_.size(); ++i) {
    handles_[i] = spawn(std::move(children_[i]), &Gather::child_ended, this);
  }
  if (remaining_ == 0) {
    if (root_ != nullptr) root_->resumed();
    return false;
  }
  armed_ = true;
  return true;
}

void Gather::child_ended(void* self, std::exception_ptr /*error: kept by the child*/) noexcept {
  auto* g = static_cast<Gather*>(self);
  if (--g->remaining_ != 0 || !g->armed_) return;
  g->armed_ = false;
  if (g->cancelling_) {
    g->cancelling_ = false;
    if (!g->root_->settled()) return;  // the awaiting task stopped: its frames are gone
  }
  g->resume_later();
}

void Gather::resume_later() noexcept {
  Shard* shard = Shard::current();
  if (shard == nullptr || root_ == nullptr) {
    if (root_ != nullptr) root_->resumed();
    h_.resume();
    return;
  }
  // From the run queue, not from inside the last child's end; only this
  // suspension (a cancel or stop meanwhile resumed or destroyed it).
  shard->post([root = root_, gen = root_->generation(), n = root_->suspensions(), this] {
    if (root->generation() != gen || root->suspensions() != n || root->pending() != this) return;
    root->resumed();
    h_.resume();
  });
}

bool Gather::cancel() noexcept {
  const bool stop = root_ != nullptr && root_->stopping();
  armed_ = false;  // children that end right now do not resume anything
  for (TaskHandle& child : handles_) {
    if (stop) child.stop();
    else child.cancel();
  }
  if (remaining_ == 0) return true;
  armed_ = true;
  cancelling_ = true;
  return false;
}

Gather::~Gather() {
  // The awaiting frame goes while children still run (a thread's last
  // roots destroyed in any order): they must not report here any more.
  for (TaskHandle& child : handles_) {
    if (TaskRoot* r = child.root()) {
      r->on_end(nullptr, nullptr);
      r->stop();
    }
  }
}

}  // namespace detail

}  // namespace ringshard
