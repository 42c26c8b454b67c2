/*
 * ringshard-epoll-echo: the epoll baseline for ringshard's echo servers.
 *
 * A single-threaded TCP echo server in plain C on edge-triggered epoll, the
 * classic readiness design that io_uring servers are expected to beat:
 *
 *   - every socket is non-blocking and registered once with
 *     EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET; epoll_wait takes 512 events;
 *   - the listener is drained with accept4 until EAGAIN; after an error such
 *     as EMFILE accepting pauses for 100 ms instead of spinning;
 *   - a readable connection is read until EAGAIN (or a short read, which on a
 *     stream socket means the receive queue is empty: new data raises a new
 *     edge) and each chunk is written straight back. What a write does not
 *     take waits in a per-connection buffer until EPOLLOUT; bytes read
 *     meanwhile join it, so the order is exact;
 *   - backpressure: above 1 MiB pending output the connection stops reading
 *     (the data stays in the socket) and reads again once an EPOLLOUT drain
 *     brings it to 256 KiB or less.
 *
 *   ringshard-epoll-echo [--host 127.0.0.1] [--port 0]
 *
 * The first line on stdout is `listening on HOST:PORT` (port 0 picks a free
 * port). SIGINT or SIGTERM closes every connection and exits with status 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "epoll-echo"

enum {
  MAX_EVENTS = 512,
  LISTEN_BACKLOG = 4096, /* the kernel caps it at net.core.somaxconn */
  SCRATCH_SIZE = 256 * 1024,
  ACCEPT_PAUSE_MS = 100,
};
#define HIGH_WATER ((size_t)1 << 20)
#define LOW_WATER ((size_t)256 << 10)

#include "baseline.h" /* die(), options, listener, signalfd: after PROGRAM and LISTEN_BACKLOG */

struct conn {
  int fd;
  bool eof;         /* the peer sent everything it will send */
  bool rdhup;       /* the peer's FIN has been reported: read to the end */
  bool read_paused; /* stopped reading above the high mark; data may wait in the socket */
  /* Pending output: [out + head, out + head + len). */
  char *out;
  size_t head;
  size_t len;
  size_t cap;
};

static struct {
  int epoll_fd;
  int listen_fd;
  int signal_fd;
  bool accept_paused;
  bool accept_error_reported;
  long long accept_resume_ms;
  struct conn **by_fd; /* open connections by descriptor, for the shutdown */
  size_t by_fd_cap;
  unsigned long long accepted;
  char scratch[SCRATCH_SIZE];
} S;

/* epoll_event.data.ptr of the two descriptors that are not connections. */
static char LISTEN_TAG;
static char SIGNAL_TAG;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- one connection --------------------------------------------------------- */

static void close_conn(struct conn *c) {
  S.by_fd[c->fd] = NULL;
  close(c->fd); /* also removes it from the epoll set */
  free(c->out);
  free(c);
}

/* Appends to the pending output, reusing the space before `head`. */
static void append(struct conn *c, const char *data, size_t n) {
  if (c->head + c->len + n > c->cap) {
    if (c->len + n <= c->cap) {
      memmove(c->out, c->out + c->head, c->len);
      c->head = 0;
    } else {
      size_t cap = c->cap ? c->cap : 64 * 1024;
      while (cap < c->len + n) cap *= 2;
      char *out = malloc(cap);
      if (!out) die("out of memory (%zu bytes)", cap);
      if (c->len > 0) memcpy(out, c->out + c->head, c->len);
      free(c->out);
      c->out = out;
      c->cap = cap;
      c->head = 0;
    }
  }
  memcpy(c->out + c->head + c->len, data, n);
  c->len += n;
}

/* Writes pending output until it is gone or the socket is full (then an
 * EPOLLOUT edge follows once it has room). Returns false on an error. */
static bool flush(struct conn *c) {
  while (c->len > 0) {
    ssize_t w = send(c->fd, c->out + c->head, c->len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    c->head += (size_t)w;
    c->len -= (size_t)w;
    if (c->len > 0) return true; /* short: the send buffer is full */
  }
  c->head = 0;
  return true;
}

/* Reads until the socket is drained, the peer's end, or the high mark, and
 * echoes every chunk (straight from the read buffer when nothing waits
 * before it). Returns false on an error. */
static bool read_and_echo(struct conn *c) {
  c->read_paused = false;
  while (c->len <= HIGH_WATER) {
    ssize_t n = recv(c->fd, S.scratch, sizeof S.scratch, 0);
    if (n > 0) {
      if (c->len == 0) {
        ssize_t w;
        do {
          w = send(c->fd, S.scratch, (size_t)n, MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        if (w < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
          w = 0;
        }
        if (w < n) append(c, S.scratch + w, (size_t)(n - w));
      } else {
        append(c, S.scratch, (size_t)n);
      }
      if ((size_t)n < sizeof S.scratch && !c->rdhup) return true; /* drained */
      continue;
    }
    if (n == 0) {
      c->eof = true;
      return true;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  c->read_paused = true;
  return true;
}

static void on_conn_event(struct conn *c, uint32_t events) {
  /* An error or a hang-up in both directions: nothing can be written back. */
  if (events & (EPOLLERR | EPOLLHUP)) {
    close_conn(c);
    return;
  }
  if (events & EPOLLRDHUP) c->rdhup = true;
  if ((events & EPOLLOUT) && c->len > 0 && !flush(c)) {
    close_conn(c);
    return;
  }
  bool readable = events & (EPOLLIN | EPOLLRDHUP);
  bool may_read = c->read_paused ? c->len <= LOW_WATER : c->len <= HIGH_WATER;
  if (!c->eof && may_read && (readable || c->read_paused) && !read_and_echo(c)) {
    close_conn(c);
    return;
  }
  if (c->eof && c->len == 0) close_conn(c);
}

/* ---- accepting -------------------------------------------------------------- */

static void track(struct conn *c) {
  if ((size_t)c->fd >= S.by_fd_cap) {
    size_t cap = S.by_fd_cap ? S.by_fd_cap : 1024;
    while (cap <= (size_t)c->fd) cap *= 2;
    struct conn **by_fd = realloc(S.by_fd, sizeof *by_fd * cap);
    if (!by_fd) die("out of memory");
    memset(by_fd + S.by_fd_cap, 0, sizeof *by_fd * (cap - S.by_fd_cap));
    S.by_fd = by_fd;
    S.by_fd_cap = cap;
  }
  S.by_fd[c->fd] = c;
}

static void accept_all(void) {
  for (;;) {
    int fd = accept4(S.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      /* EMFILE, ENFILE, ENOBUFS...: the listener stays readable but retrying
       * now would fail now; try again after a pause. */
      if (!S.accept_error_reported) {
        fprintf(stderr, PROGRAM ": accept: %s; pausing accepts\n", strerror(errno));
        S.accept_error_reported = true;
      }
      S.accept_paused = true;
      S.accept_resume_ms = now_ms() + ACCEPT_PAUSE_MS;
      return;
    }
    S.accept_error_reported = false;
    ++S.accepted;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(S.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      fprintf(stderr, PROGRAM ": epoll_ctl: %s\n", strerror(errno));
      close(fd);
      free(c);
      continue;
    }
    track(c);
  }
}

/* ---- the loop --------------------------------------------------------------- */

static void run(void) {
  static struct epoll_event events[MAX_EVENTS];
  bool stopping = false;
  while (!stopping) {
    int timeout = -1;
    if (S.accept_paused) {
      long long left = S.accept_resume_ms - now_ms();
      timeout = left > 0 ? (int)left : 0;
    }
    int n = epoll_wait(S.epoll_fd, events, MAX_EVENTS, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; ++i) {
      void *ptr = events[i].data.ptr;
      if (ptr == &LISTEN_TAG) {
        if (!S.accept_paused) accept_all();
      } else if (ptr == &SIGNAL_TAG) {
        struct signalfd_siginfo info;
        if (read(S.signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
          fprintf(stderr, PROGRAM ": %s, stopping\n", strsignal((int)info.ssi_signo));
          stopping = true;
        }
      } else {
        on_conn_event(ptr, events[i].events);
      }
    }
    if (S.accept_paused && now_ms() >= S.accept_resume_ms) {
      S.accept_paused = false;
      accept_all(); /* edge-triggered: the waiting connections raise no new event */
    }
  }
  for (size_t fd = 0; fd < S.by_fd_cap; ++fd) {
    if (S.by_fd[fd]) close_conn(S.by_fd[fd]);
  }
  free(S.by_fd);
  fprintf(stderr, PROGRAM ": stopped, %llu connections served\n", S.accepted);
}

/* ---- setup ------------------------------------------------------------------ */

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  unsigned port = 0;
  parse_options(argc, argv, &host, &port);

  /* The signalfd sits in the epoll set. */
  S.signal_fd = open_signalfd(SFD_NONBLOCK);

  char bound_host[INET_ADDRSTRLEN] = "";
  unsigned bound_port = 0;
  S.listen_fd = open_listener(host, port, SOCK_NONBLOCK, bound_host, &bound_port);

  S.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (S.epoll_fd < 0) die("epoll_create1: %s", strerror(errno));
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &LISTEN_TAG};
  if (epoll_ctl(S.epoll_fd, EPOLL_CTL_ADD, S.listen_fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
  ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &SIGNAL_TAG};
  if (epoll_ctl(S.epoll_fd, EPOLL_CTL_ADD, S.signal_fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));

  printf("listening on %s:%u\n", bound_host, bound_port);
  fflush(stdout);
  run();

  close(S.epoll_fd);
  close(S.listen_fd);
  close(S.signal_fd);
  return 0;
}
