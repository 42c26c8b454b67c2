/* What the two C baselines share: errors, the command line (--host, --port),
 * the listening socket and the signalfd for SIGINT/SIGTERM. Include it after
 * defining PROGRAM (the name errors are prefixed with) and LISTEN_BACKLOG. */
#ifndef RINGSHARD_BASELINE_H
#define RINGSHARD_BASELINE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

static void die(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, PROGRAM ": ");
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(1);
}

static void usage(FILE *out, const char *program) {
  fprintf(out, "usage: %s [--host IPV4] [--port PORT]\n", program);
}

static void bad_usage(const char *program, const char *format, const char *arg) {
  fprintf(stderr, PROGRAM ": ");
  fprintf(stderr, format, arg);
  fputc('\n', stderr);
  usage(stderr, program);
  exit(1);
}

static void parse_options(int argc, char **argv, const char **host, unsigned *port) {
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout, argv[0]);
      exit(0);
    }
    if (strcmp(arg, "--host") != 0 && strcmp(arg, "--port") != 0) bad_usage(argv[0], "unknown option %s", arg);
    if (i + 1 >= argc) bad_usage(argv[0], "%s needs a value", arg);
    const char *value = argv[++i];
    if (strcmp(arg, "--host") == 0) {
      *host = value;
    } else {
      char *end = NULL;
      errno = 0;
      unsigned long n = strtoul(value, &end, 10);
      if (errno != 0 || end == value || *end != '\0' || n > 65535 || value[0] == '-') {
        bad_usage(argv[0], "--port must be a number from 0 to 65535, got %s", value);
      }
      *port = (unsigned)n;
    }
  }
}

/* A listening TCP socket on host:port (port 0: the kernel picks one), created
 * with the extra socket() flags `socket_flags`; returns it and where it is
 * bound. */
static int open_listener(const char *host, unsigned port, int socket_flags, char *bound_host, unsigned *bound_port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("--host must be an IPv4 address, got %s", host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | socket_flags, 0);
  if (fd < 0) die("socket: %s", strerror(errno));
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("SO_REUSEADDR: %s", strerror(errno));
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind %s:%u: %s", host, port, strerror(errno));
  if (listen(fd, LISTEN_BACKLOG) != 0) die("listen: %s", strerror(errno));
  struct sockaddr_in bound;
  socklen_t len = sizeof bound;
  if (getsockname(fd, (struct sockaddr *)&bound, &len) != 0) die("getsockname: %s", strerror(errno));
  inet_ntop(AF_INET, &bound.sin_addr, bound_host, INET_ADDRSTRLEN);
  *bound_port = ntohs(bound.sin_port);
  return fd;
}

/* SIGINT and SIGTERM are blocked and read from the returned signalfd. A
 * shell without job control starts `cmd &` with SIGINT ignored, and an
 * ignored signal never reaches a signalfd: the default disposition is
 * restored first. */
static int open_signalfd(int signalfd_flags) {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) die("sigprocmask: %s", strerror(errno));
  int fd = signalfd(-1, &mask, SFD_CLOEXEC | signalfd_flags);
  if (fd < 0) die("signalfd: %s", strerror(errno));
  return fd;
}

#endif
