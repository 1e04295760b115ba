/*
 * twill_netlink_events: the rtnetlink notification socket, read in C.
 *
 * Why not the `netlink` package: when notifications overflow the socket's
 * receive buffer the kernel sets the socket error (ENOBUFS), epoll reports
 * EPOLLERR, and libuv hands the package's poll callback status UV_EBADF; the
 * package then builds an exception with a NULL syscall name
 * (Napi::String::New(env, NULL)), which throws a C++ exception out of a libuv
 * callback: std::terminate, SIGABRT, the whole process gone. No JavaScript
 * runs before that, so it cannot be caught from JavaScript.
 *
 * Here an overflow is data: the socket error is read (recv returns ENOBUFS
 * once), the poll is restarted, the messages still queued are delivered, and
 * JavaScript is told that notifications were lost, so it can read the kernel
 * again. NETLINK_NO_ENOBUFS is deliberately not set: it would hide the loss.
 *
 * API (all on the main thread):
 *   open(groups: number[], recvBufferSize: number, skipTypes: number[],
 *        onBatch: (messages: Buffer | null, lost: boolean, drained: boolean, error: string | null,
 *                  skipped: Buffer | null) => void, protocol?: number): handle
 *   close(handle)          idempotent
 *   ref(handle) / unref(handle)
 * `messages` holds whole netlink messages back to back (types in skipTypes
 * dropped before they reach JavaScript). `lost`: notifications were lost
 * during this read (JavaScript coalesces a burst of losses into one resync).
 * `drained`: the socket was read until empty. `error`: the socket failed for
 * another reason and is closed. `skipped` summarises the messages dropped by
 * skipTypes (null when none was): what they touched, not what they said
 * (the layout is at note_skipped), so JavaScript can tell whether its own
 * objects changed without decoding the flood its own writes cause.
 * `protocol`: the netlink family, NETLINK_ROUTE when absent (the tunnel
 * guard listens to NETLINK_NETFILTER's nftables group the same way).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <node_api.h>
#include <uv.h>

#include "nft-library.h"
#include "mapped-source.h"
#include "malloc-arenas.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* Datagrams read per wake-up at most, so that a flood does not starve the event loop. */
#define MAX_READS_PER_WAKE 64
#define RECV_BUFFER_BYTES (64 * 1024)
/* Distinct device indexes a summary of skipped messages lists before it says "any". */
#define MAX_SKIPPED_IFINDEXES 64

typedef struct {
  uv_poll_t poll;            /* first member: the close callback casts back */
  int fd;
  int open;
  uint64_t skip_mask;        /* message types < 64 to drop */
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  char *recv_buf;
  char *out;
  size_t out_len, out_cap;
  /* Summary of the skipped messages since the last delivery (note_skipped). */
  int skipped;
  int skipped_unknown;
  uint8_t skipped_protocols[32];
  uint32_t n_skipped_ifindexes;
  int32_t skipped_ifindexes[MAX_SKIPPED_IFINDEXES];
} event_socket;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int append(event_socket *s, const char *data, size_t len) {
  if (s->out_len + len > s->out_cap) {
    size_t cap = s->out_cap ? s->out_cap : 65536;
    while (cap < s->out_len + len) cap *= 2;
    char *p = realloc(s->out, cap);
    if (!p) return -1;
    s->out = p;
    s->out_cap = cap;
  }
  memcpy(s->out + s->out_len, data, len);
  s->out_len += len;
  return 0;
}

/*
 * A skipped message still says what it touched: a route its protocol
 * (rtm_protocol, byte 5 of struct rtmsg), an address or neighbour its
 * device (ifa_index / ndm_ifindex, bytes 4-7 of struct ifaddrmsg / ndmsg).
 * Delivered as: 32 bytes, a bit per route protocol; 4 bytes, 1 when some
 * message could not be told (then assume it touched anything); then each
 * device index as a little-endian int32.
 */
static void note_skipped(event_socket *s, const struct nlmsghdr *h) {
  const unsigned char *p = NLMSG_DATA(h);
  size_t len = h->nlmsg_len >= NLMSG_HDRLEN ? h->nlmsg_len - NLMSG_HDRLEN : 0;
  s->skipped = 1;
  if (h->nlmsg_type == RTM_NEWROUTE || h->nlmsg_type == RTM_DELROUTE) {
    if (len < sizeof(struct rtmsg)) { s->skipped_unknown = 1; return; }
    uint8_t protocol = ((const struct rtmsg *)p)->rtm_protocol;
    s->skipped_protocols[protocol >> 3] |= (uint8_t)(1u << (protocol & 7));
    return;
  }
  if (len < 8 || (h->nlmsg_type != RTM_NEWNEIGH && h->nlmsg_type != RTM_DELNEIGH && h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR)) {
    s->skipped_unknown = 1;
    return;
  }
  int32_t ifindex;
  memcpy(&ifindex, p + 4, sizeof ifindex);
  for (uint32_t i = 0; i < s->n_skipped_ifindexes; i++) if (s->skipped_ifindexes[i] == ifindex) return;
  if (s->n_skipped_ifindexes < MAX_SKIPPED_IFINDEXES) s->skipped_ifindexes[s->n_skipped_ifindexes++] = ifindex;
  else s->skipped_unknown = 1;
}

static void on_closed(uv_handle_t *h) {
  event_socket *s = (event_socket *)h;
  if (s->fd >= 0) close(s->fd);
  free(s->recv_buf);
  free(s->out);
  free(s);
}

/* Releases the JS side and closes the socket; memory goes in on_closed. */
static void shut(event_socket *s) {
  if (!s->open) return;
  s->open = 0;
  uv_poll_stop(&s->poll);
  if (s->callback) { napi_delete_reference(s->env, s->callback); s->callback = NULL; }
  if (s->async) { napi_async_destroy(s->env, s->async); s->async = NULL; }
  uv_close((uv_handle_t *)&s->poll, on_closed);
}

static void deliver(event_socket *s, int lost, int drained, const char *error) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[5], cb, recv, result;
  if (s->out_len > 0) {
    void *copy;
    napi_create_buffer_copy(env, s->out_len, s->out, &copy, &argv[0]);
  } else {
    napi_get_null(env, &argv[0]);
  }
  s->out_len = 0;
  napi_get_boolean(env, lost, &argv[1]);
  napi_get_boolean(env, drained, &argv[2]);
  if (error) napi_create_string_utf8(env, error, NAPI_AUTO_LENGTH, &argv[3]);
  else napi_get_null(env, &argv[3]);
  if (s->skipped) {
    size_t n = 36 + 4 * (size_t)s->n_skipped_ifindexes;
    void *data;
    napi_create_buffer(env, n, &data, &argv[4]);
    unsigned char *b = data;
    memcpy(b, s->skipped_protocols, 32);
    uint32_t unknown = s->skipped_unknown ? 1 : 0;
    memcpy(b + 32, &unknown, 4);
    memcpy(b + 36, s->skipped_ifindexes, 4 * (size_t)s->n_skipped_ifindexes);
    s->skipped = 0;
    s->skipped_unknown = 0;
    s->n_skipped_ifindexes = 0;
    memset(s->skipped_protocols, 0, sizeof s->skipped_protocols);
  } else {
    napi_get_null(env, &argv[4]);
  }
  napi_get_reference_value(env, s->callback, &cb);
  napi_get_undefined(env, &recv);
  napi_callback_scope cscope;
  napi_value resource;
  napi_create_object(env, &resource);
  if (napi_open_callback_scope(env, resource, s->async, &cscope) == napi_ok) {
    if (napi_call_function(env, recv, cb, 5, argv, &result) == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc); /* as if thrown from any other callback: 'uncaughtException' */
    }
    napi_close_callback_scope(env, cscope);
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  event_socket *s = (event_socket *)handle;
  if (!s->open) return;
  /* status < 0: epoll said EPOLLERR (the socket error is set: an overflow);
   * libuv has stopped the poll. Reading below collects the error. */
  int lost = status < 0;
  int drained = 0;
  const char *error = NULL;
  char errbuf[128];
  for (int i = 0; i < MAX_READS_PER_WAKE; i++) {
    struct iovec iov = { .iov_base = s->recv_buf, .iov_len = RECV_BUFFER_BYTES };
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) { i--; continue; }
      if (errno == ENOBUFS) { lost = 1; continue; }
      if (errno == EAGAIN || errno == EWOULDBLOCK) { drained = 1; break; }
      snprintf(errbuf, sizeof errbuf, "recv: %s", strerror(errno));
      error = errbuf;
      break;
    }
    if (n == 0) { drained = 1; break; }
    if (mh.msg_flags & MSG_TRUNC) lost = 1; /* a notification larger than the buffer: its tail is gone */
    const struct nlmsghdr *h = (const struct nlmsghdr *)s->recv_buf;
    size_t left = (size_t)n;
    for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type < 64 && (s->skip_mask & (1ULL << h->nlmsg_type))) { note_skipped(s, h); continue; }
      if (h->nlmsg_type == NLMSG_OVERRUN) { lost = 1; continue; }
      if (append(s, (const char *)h, NLMSG_ALIGN(h->nlmsg_len) <= left ? NLMSG_ALIGN(h->nlmsg_len) : h->nlmsg_len) < 0) {
        lost = 1; /* out of memory: drop, and say so */
      }
    }
  }
  if (!error && status < 0) {
    int err = uv_poll_start(&s->poll, UV_READABLE, on_readable);
    if (err) { snprintf(errbuf, sizeof errbuf, "poll: %s", uv_strerror(err)); error = errbuf; }
  }
  if (s->out_len > 0 || s->skipped || lost || error) deliver(s, lost, drained, error);
  if (error) shut(s);
}

static event_socket *unwrap(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "expected an event socket handle");
    return NULL;
  }
  return *(event_socket **)p; /* NULL once closed: callers do nothing */
}

static void finalize_handle(napi_env env, void *data, void *hint) {
  /* The handle box only; a socket not closed stays open (it is referenced by its poll). */
  free(data);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) { napi_throw_type_error(env, NULL, "open(groups, recvBufferSize, skipTypes, onBatch[, protocol])"); return NULL; }
  int32_t protocol = NETLINK_ROUTE;
  if (argc >= 5) {
    napi_valuetype pt;
    napi_typeof(env, argv[4], &pt);
    if (pt == napi_number) napi_get_value_int32(env, argv[4], &protocol);
  }
  uint32_t ngroups = 0, nskip = 0;
  int32_t rcvbuf = 0;
  napi_get_array_length(env, argv[0], &ngroups);
  napi_get_value_int32(env, argv[1], &rcvbuf);
  napi_get_array_length(env, argv[2], &nskip);
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t != napi_function) { napi_throw_type_error(env, NULL, "onBatch must be a function"); return NULL; }

  uint64_t skip = 0;
  for (uint32_t i = 0; i < nskip; i++) {
    napi_value v; uint32_t type = 0;
    napi_get_element(env, argv[2], i, &v);
    napi_get_value_uint32(env, v, &type);
    if (type < 64) skip |= 1ULL << type;
  }

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  if (fd < 0) return throw_errno(env, "cannot open the netlink notification socket", errno);
  if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) {
    int e = errno; close(fd); return throw_errno(env, "cannot set the receive buffer size", e);
  }
  struct sockaddr_nl addr;
  memset(&addr, 0, sizeof addr);
  addr.nl_family = AF_NETLINK;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno; close(fd); return throw_errno(env, "cannot bind the netlink notification socket", e);
  }
  for (uint32_t i = 0; i < ngroups; i++) {
    napi_value v; uint32_t group = 0;
    napi_get_element(env, argv[0], i, &v);
    napi_get_value_uint32(env, v, &group);
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) {
      int e = errno; close(fd); return throw_errno(env, "cannot join a netlink multicast group", e);
    }
  }

  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) { close(fd); napi_throw_error(env, NULL, "no event loop"); return NULL; }
  event_socket *s = calloc(1, sizeof *s);
  char *buf = malloc(RECV_BUFFER_BYTES);
  void **box = malloc(sizeof(void *));
  if (!s || !buf || !box) { free(s); free(buf); free(box); close(fd); napi_throw_error(env, NULL, "out of memory"); return NULL; }
  s->fd = fd;
  s->env = env;
  s->skip_mask = skip;
  s->recv_buf = buf;
  int err = uv_poll_init(loop, &s->poll, fd);
  if (err) { free(s); free(buf); free(box); close(fd); napi_throw_error(env, NULL, uv_strerror(err)); return NULL; }
  s->open = 1;
  napi_create_reference(env, argv[3], 1, &s->callback);
  napi_value name;
  napi_create_string_utf8(env, "twill:netlink-events", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->async);
  err = uv_poll_start(&s->poll, UV_READABLE, on_readable);
  if (err) { shut(s); free(box); napi_throw_error(env, NULL, uv_strerror(err)); return NULL; }
  *box = s;
  napi_value handle;
  napi_create_external(env, box, finalize_handle, NULL, &handle);
  return handle;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p) return NULL;
  event_socket **box = p;
  if (*box) { shut(*box); *box = NULL; }
  return NULL;
}

static napi_value js_ref(napi_env env, napi_callback_info info, int on) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return NULL;
  event_socket *s = unwrap(env, argv[0]);
  if (!s) return NULL;
  if (on) uv_ref((uv_handle_t *)&s->poll); else uv_unref((uv_handle_t *)&s->poll);
  return NULL;
}
static napi_value js_ref_on(napi_env env, napi_callback_info info) { return js_ref(env, info, 1); }
static napi_value js_ref_off(napi_env env, napi_callback_info info) { return js_ref(env, info, 0); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
    { "ref", NULL, js_ref_on, NULL, NULL, NULL, napi_default, NULL },
    { "unref", NULL, js_ref_off, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  nft_library_init(env, exports);
  mapped_source_init(env, exports);
  malloc_arenas_init(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
