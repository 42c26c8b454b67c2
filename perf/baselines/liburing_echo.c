/*
 * ringshard-liburing-echo: the liburing baseline for ringshard's echo servers.
 *
 * A single-threaded TCP echo server in plain C on Debian's liburing, written
 * the way a careful liburing server is written today, so that ringshard's
 * uring layer (ringshard-echo-plain) and its actor echo server are measured
 * against a fair bar:
 *
 *   - one ring, SINGLE_ISSUER|DEFER_TASKRUN (falling back to COOP_TASKRUN,
 *     then to a plain ring), a CQ of 8192 entries, the ring fd registered;
 *   - one multishot accept; one multishot recv per connection that takes its
 *     memory from a provided-buffer ring (4096 buffers of 4 KiB, group 0);
 *   - exactly one send in flight per connection. Received bytes stay in the
 *     provided buffers they arrived in and are sent from there (one buffer:
 *     send; several: sendmsg gathering up to 64 of them), and each buffer
 *     goes back to the ring once all of its bytes are sent. Small chunks are
 *     packed into the free tail of the last queued buffer, so a client that
 *     writes byte by byte does not pin a 4 KiB buffer per byte. When three
 *     quarters of the buffers are held, new data is copied out to the heap
 *     and its buffer returned at once, so slow readers can never starve the
 *     ring for everybody else;
 *   - backpressure: above 1 MiB queued a connection stops receiving (its
 *     multishot recv is cancelled), below 256 KiB it receives again;
 *   - one io_uring_submit_and_wait(ring, 1) per loop turn, then every ready
 *     CQE is handled and the CQ head published once; connections are settled
 *     (send started, recv paused, resumed or re-armed, socket closed) after
 *     the turn's last CQE, so one send covers everything the turn received.
 *
 *   ringshard-liburing-echo [--host 127.0.0.1] [--port 0]
 *
 * The first line on stdout is `listening on HOST:PORT` (port 0 picks a free
 * port). SIGINT or SIGTERM closes every connection and exits with status 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define PROGRAM "liburing-echo"

enum {
  SQ_ENTRIES = 1024,
  /* Every recv completion consumes a buffer, so one turn can bring as many
   * recv CQEs as there are buffers, plus sends and the rest. */
  CQ_ENTRIES = 8192,
  BUF_COUNT = 4096, /* a power of two */
  BUF_SIZE = 4096,
  BUF_GROUP = 0,
  /* Connections keep received bytes in the provided buffers only while more
   * than this many buffers are left to the kernel; below, they copy. */
  BUF_RESERVE = BUF_COUNT / 4,
  MAX_IOV = 64,           /* buffers gathered by one sendmsg */
  HEAP_CHUNK = 64 * 1024, /* heap segment size when copying out */
  LISTEN_BACKLOG = 4096,  /* the kernel caps it at net.core.somaxconn */
  ACCEPT_PAUSE_MS = 100,  /* after an accept error such as EMFILE */
};
#define HIGH_WATER ((size_t)1 << 20)
#define LOW_WATER ((size_t)256 << 10)

#include "baseline.h" /* die(), options, listener, signalfd: after PROGRAM and LISTEN_BACKLOG */

/* user_data: the operation in the low byte; for connection operations also
 * the connection's slot and the generation of that slot, so that a CQE can
 * never reach a later connection that reuses the slot. */
enum op { OP_ACCEPT, OP_ACCEPT_RESUME, OP_SIGNAL, OP_RECV, OP_SEND, OP_CANCEL, OP_CLOSE };

static uint64_t tag(enum op op, uint32_t slot, uint32_t generation) {
  return ((uint64_t)generation << 32) | ((uint64_t)slot << 8) | (uint64_t)op;
}
static enum op op_of(uint64_t data) { return (enum op)(data & 0xff); }
static uint32_t slot_of(uint64_t data) { return (uint32_t)(data >> 8) & 0xffffff; }
static uint32_t generation_of(uint64_t data) { return (uint32_t)(data >> 32); }

/* A run of queued bytes: [base + off, base + off + len). It lives in a
 * provided buffer (bid >= 0, cap BUF_SIZE) or in a heap block (bid < 0). */
struct segment {
  char *base;
  uint32_t off;
  uint32_t len;
  uint32_t cap;
  int32_t bid;
};

struct conn {
  int fd;
  uint32_t slot;
  uint32_t generation;
  bool recv_armed;     /* a multishot recv is in the kernel */
  bool recv_cancelled; /* ... and a cancel for it has been submitted */
  bool send_in_flight;
  bool paused; /* above the high mark: not receiving */
  bool eof;    /* the peer sent everything it will send */
  bool failed; /* an error: drop what is unsent and close */
  bool dirty;  /* on the list of connections to settle at the end of the turn */
  /* The queue of unsent bytes, a circular array of segments. The first
   * `sending` segments are what the send in flight covers; the kernel reads
   * their bytes until it completes, so only later segments may grow. */
  struct segment *segs;
  uint32_t seg_cap; /* a power of two */
  uint32_t seg_head;
  uint32_t seg_count;
  uint32_t sending;
  size_t pending; /* bytes queued, in flight included */
  struct msghdr msg;
  struct iovec iov[MAX_IOV];
};

static struct {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  char *buf_memory;
  int staged;    /* buffers added to the buffer ring, not yet published */
  unsigned held; /* buffers held in connection queues */
  int listen_fd;
  int signal_fd;
  struct signalfd_siginfo siginfo;
  struct __kernel_timespec accept_pause;
  bool accept_error_reported;
  struct conn **conns; /* by slot; a connection never moves */
  uint32_t conn_count;
  uint32_t conn_cap;
  struct conn **dirty; /* connections with CQEs this turn */
  uint32_t dirty_count;
  uint32_t *free_slots;
  uint32_t free_count;
  unsigned inflight; /* operations whose last CQE has not arrived */
  bool stopping;
  unsigned long long accepted;
} S;

static void *xmalloc(size_t size) {
  void *p = malloc(size);
  if (!p) die("out of memory (%zu bytes)", size);
  return p;
}

static void *xrealloc(void *old, size_t size) {
  void *p = realloc(old, size);
  if (!p) die("out of memory (%zu bytes)", size);
  return p;
}

/* ---- submission queue and provided buffers -------------------------------- */

static char *buffer(unsigned bid) { return S.buf_memory + (size_t)bid * BUF_SIZE; }

/* Stages a buffer for the kernel; publish_buffers() makes the staged ones
 * visible with one release store, before every submit. */
static void give_back(unsigned bid) {
  io_uring_buf_ring_add(S.br, buffer(bid), BUF_SIZE, (unsigned short)bid, io_uring_buf_ring_mask(BUF_COUNT),
                        S.staged++);
}

static void publish_buffers(void) {
  if (S.staged == 0) return;
  io_uring_buf_ring_advance(S.br, S.staged);
  S.staged = 0;
}

static bool enter_failed(int ret) { return ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY; }

static struct io_uring_sqe *next_sqe(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&S.ring);
  if (sqe) return sqe;
  /* The SQ filled up within one turn: hand what is queued to the kernel. */
  publish_buffers();
  int ret = io_uring_submit(&S.ring);
  if (enter_failed(ret)) die("io_uring_submit: %s", strerror(-ret));
  sqe = io_uring_get_sqe(&S.ring);
  if (!sqe) die("the submission queue stays full");
  return sqe;
}

/* ---- connection queues ------------------------------------------------------ */

static struct segment *seg_at(struct conn *c, uint32_t i) {
  return &c->segs[(c->seg_head + i) & (c->seg_cap - 1)];
}

static struct segment *seg_push(struct conn *c) {
  if (c->seg_count == c->seg_cap) {
    /* Grow and unwrap: the old contents go to the start of the new array. */
    uint32_t cap = c->seg_cap ? c->seg_cap * 2 : 16;
    struct segment *segs = xmalloc(sizeof *segs * cap);
    for (uint32_t i = 0; i < c->seg_count; ++i) segs[i] = *seg_at(c, i);
    free(c->segs);
    c->segs = segs;
    c->seg_cap = cap;
    c->seg_head = 0;
  }
  ++c->seg_count;
  return seg_at(c, c->seg_count - 1);
}

static void seg_release(struct segment *s) {
  if (s->bid >= 0) {
    give_back((unsigned)s->bid);
    --S.held;
  } else {
    free(s->base);
  }
}

static void seg_pop(struct conn *c) {
  seg_release(seg_at(c, 0));
  c->seg_head = (c->seg_head + 1) & (c->seg_cap - 1);
  --c->seg_count;
}

/* Queues the `n` bytes the kernel put into buffer `bid`. */
static void enqueue(struct conn *c, unsigned bid, uint32_t n) {
  char *data = buffer(bid);
  c->pending += n;
  if (c->seg_count > c->sending) {
    struct segment *tail = seg_at(c, c->seg_count - 1);
    if (tail->off + tail->len + n <= tail->cap) { /* fits behind the last queued bytes */
      memcpy(tail->base + tail->off + tail->len, data, n);
      tail->len += n;
      give_back(bid);
      return;
    }
  }
  struct segment *s = seg_push(c);
  if (S.held < BUF_COUNT - BUF_RESERVE) { /* keep the bytes where they are */
    *s = (struct segment){.base = data, .off = 0, .len = n, .cap = BUF_SIZE, .bid = (int32_t)bid};
    ++S.held;
    return;
  }
  uint32_t cap = n > HEAP_CHUNK ? n : HEAP_CHUNK;
  *s = (struct segment){.base = xmalloc(cap), .off = 0, .len = n, .cap = cap, .bid = -1};
  memcpy(s->base, data, n);
  give_back(bid);
}

/* Drops the first `n` bytes of the queue (the kernel has sent them). */
static void consume(struct conn *c, size_t n) {
  c->pending -= n;
  while (n > 0) {
    struct segment *s = seg_at(c, 0);
    if (n < s->len) {
      s->off += (uint32_t)n;
      s->len -= (uint32_t)n;
      return;
    }
    n -= s->len;
    seg_pop(c);
  }
}

/* ---- one connection --------------------------------------------------------- */

static struct conn *new_conn(int fd) {
  uint32_t slot;
  if (S.free_count > 0) {
    slot = S.free_slots[--S.free_count];
  } else {
    if (S.conn_count == S.conn_cap) {
      S.conn_cap = S.conn_cap ? S.conn_cap * 2 : 256;
      if (S.conn_cap > 0xffffff) die("too many connections");
      S.conns = xrealloc(S.conns, sizeof *S.conns * S.conn_cap);
      S.free_slots = xrealloc(S.free_slots, sizeof *S.free_slots * S.conn_cap);
      S.dirty = xrealloc(S.dirty, sizeof *S.dirty * S.conn_cap);
    }
    slot = S.conn_count++;
    struct conn *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->slot = slot;
    S.conns[slot] = c;
  }
  struct conn *c = S.conns[slot];
  c->fd = fd;
  return c;
}

static void arm_recv(struct conn *c) {
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BUF_GROUP;
  io_uring_sqe_set_data64(sqe, tag(OP_RECV, c->slot, c->generation));
  c->recv_armed = true;
  c->recv_cancelled = false;
  ++S.inflight;
}

static void cancel_recv(struct conn *c) {
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_cancel64(sqe, tag(OP_RECV, c->slot, c->generation), 0);
  io_uring_sqe_set_data64(sqe, tag(OP_CANCEL, 0, 0));
  c->recv_cancelled = true;
  ++S.inflight;
}

/* One send per socket: two in flight could reach the wire out of order. It
 * covers what is queued, up to MAX_IOV segments; a plain send when that is
 * one segment (the common request/response case), a gathering sendmsg when
 * more. MSG_NOSIGNAL: a peer that reset gives -EPIPE, not SIGPIPE. */
static void start_send(struct conn *c) {
  if (c->send_in_flight || c->seg_count == 0) return;
  struct io_uring_sqe *sqe = next_sqe();
  uint32_t n = c->seg_count < MAX_IOV ? c->seg_count : MAX_IOV;
  if (n == 1) {
    struct segment *s = seg_at(c, 0);
    io_uring_prep_send(sqe, c->fd, s->base + s->off, s->len, MSG_NOSIGNAL);
  } else {
    for (uint32_t i = 0; i < n; ++i) {
      struct segment *s = seg_at(c, i);
      c->iov[i].iov_base = s->base + s->off;
      c->iov[i].iov_len = s->len;
    }
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = n;
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
  }
  io_uring_sqe_set_data64(sqe, tag(OP_SEND, c->slot, c->generation));
  c->sending = n;
  c->send_in_flight = true;
  ++S.inflight;
}

static void close_conn(struct conn *c) {
  while (c->seg_count > 0) seg_pop(c);
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_close(sqe, c->fd);
  io_uring_sqe_set_data64(sqe, tag(OP_CLOSE, 0, 0));
  ++S.inflight;
  /* Nothing of this connection is in the kernel any more: the slot is free
   * at once, and the next generation tells its CQEs apart. */
  c->fd = -1;
  c->generation++;
  c->recv_armed = c->recv_cancelled = c->send_in_flight = false;
  c->paused = c->eof = c->failed = false;
  c->seg_head = c->sending = 0;
  c->pending = 0;
  S.free_slots[S.free_count++] = c->slot;
}

/* Brings a connection's operations in line with its state: sends what is
 * queued, pauses or resumes receiving, closes when nothing is left to do.
 * Every event of a connection ends here. */
static void settle(struct conn *c) {
  if (!c->failed && !S.stopping) start_send(c);
  if (c->pending > HIGH_WATER) {
    c->paused = true;
  } else if (c->pending <= LOW_WATER) {
    c->paused = false;
  }
  bool want_recv = !S.stopping && !c->eof && !c->failed && !c->paused;
  if (want_recv && !c->recv_armed) arm_recv(c);
  /* When stopping, the one cancel-all covers this recv already. */
  if (!want_recv && c->recv_armed && !c->recv_cancelled && !S.stopping) cancel_recv(c);
  bool finished = c->failed || S.stopping || (c->eof && c->pending == 0);
  if (finished && !c->recv_armed && !c->send_in_flight) close_conn(c);
}

/* Recv and send completions only mark their connection; it is settled once
 * after the turn's last CQE. A turn often brings several recv CQEs for one
 * connection (a multishot recv posts one per buffer it fills), and the send
 * started then gathers all of them instead of going out with the first. */
static void mark_dirty(struct conn *c) {
  if (c->dirty) return;
  c->dirty = true;
  S.dirty[S.dirty_count++] = c;
}

static void settle_dirty(void) {
  for (uint32_t i = 0; i < S.dirty_count; ++i) {
    struct conn *c = S.dirty[i];
    c->dirty = false;
    if (c->fd >= 0) settle(c); /* closed meanwhile (on stop): nothing to do */
  }
  S.dirty_count = 0;
}

static struct conn *conn_of(const struct io_uring_cqe *cqe) {
  uint32_t slot = slot_of(cqe->user_data);
  struct conn *c = slot < S.conn_count ? S.conns[slot] : NULL;
  if (!c || c->fd < 0 || c->generation != generation_of(cqe->user_data)) die("CQE for a closed connection");
  return c;
}

static void on_recv(struct conn *c, const struct io_uring_cqe *cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) { /* this recv ended; settle() re-arms it if wanted */
    c->recv_armed = false;
    --S.inflight;
  }
  if (cqe->flags & IORING_CQE_F_BUFFER) {
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (cqe->res > 0 && !c->failed && !S.stopping) {
      enqueue(c, bid, (uint32_t)cqe->res);
    } else {
      give_back(bid);
    }
  }
  if (cqe->res == 0) {
    c->eof = true;
  } else if (cqe->res < 0 && cqe->res != -ECANCELED && cqe->res != -ENOBUFS) {
    /* -ECANCELED is our own pause or stop; -ENOBUFS means the buffer ring
     * ran dry: the re-armed recv finds the buffers returned meanwhile, which
     * are published before the next submit. */
    c->failed = true;
  }
  mark_dirty(c);
}

static void on_send(struct conn *c, const struct io_uring_cqe *cqe) {
  c->send_in_flight = false;
  --S.inflight;
  if (cqe->res < 0) {
    c->failed = true;
  } else {
    consume(c, (size_t)cqe->res); /* a short send continues from where it stopped */
  }
  c->sending = 0;
  mark_dirty(c);
}

/* ---- accepting ------------------------------------------------------------- */

static void arm_accept(void) {
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_multishot_accept(sqe, S.listen_fd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, 0, 0));
  ++S.inflight;
}

static void on_accept(const struct io_uring_cqe *cqe) {
  bool more = cqe->flags & IORING_CQE_F_MORE;
  if (!more) --S.inflight;
  if (cqe->res >= 0) {
    ++S.accepted;
    S.accept_error_reported = false;
    /* Echo is request/response: without NODELAY, Nagle holds back replies. */
    int one = 1;
    setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    settle(new_conn(cqe->res)); /* arms the recv (or closes at once when stopping) */
  } else if (cqe->res != -ECANCELED && !S.accept_error_reported) {
    fprintf(stderr, PROGRAM ": accept: %s; pausing accepts\n", strerror(-cqe->res));
    S.accept_error_reported = true;
  }
  if (more || S.stopping) return;
  /* The multishot accept ended. After an error (EMFILE, ENFILE, ...)
   * re-arming at once would fail at once and spin: wait a little, closing
   * connections meanwhile frees descriptors. */
  if (cqe->res >= 0) {
    arm_accept();
  } else {
    struct io_uring_sqe *sqe = next_sqe();
    io_uring_prep_timeout(sqe, &S.accept_pause, 0, 0);
    io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT_RESUME, 0, 0));
    ++S.inflight;
  }
}

/* ---- signals and stopping --------------------------------------------------- */

static void arm_signal_read(void) {
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_read(sqe, S.signal_fd, &S.siginfo, sizeof S.siginfo, 0);
  io_uring_sqe_set_data64(sqe, tag(OP_SIGNAL, 0, 0));
  ++S.inflight;
}

static void stop(void) {
  S.stopping = true;
  /* One request cancels everything in the ring: the accept, an accept
   * pause, every recv and every send parked on a peer that does not read. */
  struct io_uring_sqe *sqe = next_sqe();
  io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, tag(OP_CANCEL, 0, 0));
  ++S.inflight;
  for (uint32_t i = 0; i < S.conn_count; ++i) {
    if (S.conns[i]->fd >= 0) settle(S.conns[i]); /* idle ones close now, busy ones on their CQEs */
  }
}

static void on_signal(const struct io_uring_cqe *cqe) {
  --S.inflight;
  if (cqe->res == (int)sizeof S.siginfo) {
    fprintf(stderr, PROGRAM ": %s, stopping\n", strsignal((int)S.siginfo.ssi_signo));
  } else {
    fprintf(stderr, PROGRAM ": reading the signalfd failed (%d), stopping\n", cqe->res);
  }
  stop();
}

static void dispatch(const struct io_uring_cqe *cqe) {
  switch (op_of(cqe->user_data)) {
    case OP_ACCEPT: on_accept(cqe); break;
    case OP_ACCEPT_RESUME:
      --S.inflight;
      if (!S.stopping) arm_accept();
      break;
    case OP_SIGNAL: on_signal(cqe); break;
    case OP_RECV: on_recv(conn_of(cqe), cqe); break;
    case OP_SEND: on_send(conn_of(cqe), cqe); break;
    case OP_CANCEL: /* -ENOENT / -EALREADY only mean the target had finished */
      --S.inflight;
      break;
    case OP_CLOSE:
      --S.inflight;
      if (cqe->res < 0) fprintf(stderr, PROGRAM ": close: %s\n", strerror(-cqe->res));
      break;
    default: die("CQE with unknown user_data %llu", (unsigned long long)cqe->user_data);
  }
}

static void run(void) {
  arm_signal_read();
  arm_accept();
  while (!(S.stopping && S.inflight == 0)) {
    /* One enter per turn: submit what the last turn prepared, wait for at
     * least one completion, then handle every ready CQE. */
    publish_buffers();
    int ret = io_uring_submit_and_wait(&S.ring, 1);
    if (enter_failed(ret)) die("io_uring_submit_and_wait: %s", strerror(-ret));
    unsigned head;
    unsigned seen = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&S.ring, head, cqe) {
      dispatch(cqe);
      ++seen;
    }
    io_uring_cq_advance(&S.ring, seen);
    settle_dirty();
  }
  fprintf(stderr, PROGRAM ": stopped, %llu connections served\n", S.accepted);
}

/* ---- setup ------------------------------------------------------------------ */

/* Names the setup flags this program uses, e.g. "SINGLE_ISSUER|DEFER_TASKRUN". */
static const char *flags_name(unsigned flags, char *out, size_t size) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {
      {IORING_SETUP_CQSIZE, "CQSIZE"},
      {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
      {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
      {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
      {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
  };
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) {
    if (!(flags & names[i].bit) || used >= size) continue;
    int n = snprintf(out + used, size - used, "%s%s", used ? "|" : "", names[i].name);
    if (n > 0) used += (size_t)n;
  }
  return out;
}

/* The best setup the kernel accepts: SINGLE_ISSUER|DEFER_TASKRUN runs
 * completion work only when this thread enters the kernel (6.1+);
 * COOP_TASKRUN|TASKRUN_FLAG at least avoids interrupting it (5.19+). */
static void setup_ring(void) {
  static const unsigned choices[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  char refused[256] = "";
  for (size_t i = 0; i < sizeof choices / sizeof choices[0]; ++i) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    params.flags = choices[i] | IORING_SETUP_CQSIZE;
    params.cq_entries = CQ_ENTRIES;
    int ret = io_uring_queue_init_params(SQ_ENTRIES, &S.ring, &params);
    char name[96];
    flags_name(choices[i] | IORING_SETUP_CQSIZE, name, sizeof name);
    if (ret == 0) {
      fprintf(stderr, PROGRAM ": io_uring setup flags %s%s\n", name, refused);
      return;
    }
    size_t used = strlen(refused);
    snprintf(refused + used, sizeof refused - used, "; refused: %s (%s)", name, strerror(-ret));
    if (choices[i] == 0) {
      struct io_uring probe;
      if (io_uring_queue_init(8, &probe, 0) != 0) {
        die("io_uring_queue_init: %s: io_uring itself is unavailable "
            "(kernel.io_uring_disabled, seccomp or an old kernel)",
            strerror(-ret));
      }
      io_uring_queue_exit(&probe);
      die("io_uring_queue_init%s", refused);
    }
  }
}

static void setup_buffers(void) {
  size_t ring_size = sizeof(struct io_uring_buf) * BUF_COUNT;
  void *br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (br == MAP_FAILED) die("mmap of the buffer ring: %s", strerror(errno));
  void *memory = mmap(NULL, (size_t)BUF_COUNT * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) die("mmap of the buffers: %s", strerror(errno));
  S.br = br;
  S.buf_memory = memory;
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)(uintptr_t)br;
  reg.ring_entries = BUF_COUNT;
  reg.bgid = BUF_GROUP;
  int ret = io_uring_register_buf_ring(&S.ring, &reg, 0);
  if (ret < 0) die("io_uring_register_buf_ring: %s", strerror(-ret));
  io_uring_buf_ring_init(S.br);
  for (unsigned bid = 0; bid < BUF_COUNT; ++bid) give_back(bid);
  publish_buffers();
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  unsigned port = 0;
  parse_options(argc, argv, &host, &port);

  /* The signalfd is read through the ring: a signal is one more completion. */
  S.signal_fd = open_signalfd(0);

  char bound_host[INET_ADDRSTRLEN] = "";
  unsigned bound_port = 0;
  S.listen_fd = open_listener(host, port, 0, bound_host, &bound_port);
  S.accept_pause.tv_sec = 0;
  S.accept_pause.tv_nsec = (long long)ACCEPT_PAUSE_MS * 1000000;

  setup_ring();
  setup_buffers();
  /* A registered ring fd spares the kernel an fd lookup on every enter. */
  (void)io_uring_register_ring_fd(&S.ring);

  printf("listening on %s:%u\n", bound_host, bound_port);
  fflush(stdout);
  run();

  io_uring_queue_exit(&S.ring);
  munmap(S.buf_memory, (size_t)BUF_COUNT * BUF_SIZE);
  munmap(S.br, sizeof(struct io_uring_buf) * BUF_COUNT);
  for (uint32_t i = 0; i < S.conn_count; ++i) {
    free(S.conns[i]->segs);
    free(S.conns[i]);
  }
  free(S.conns);
  free(S.free_slots);
  free(S.dirty);
  close(S.listen_fd);
  close(S.signal_fd);
  return 0;
}
