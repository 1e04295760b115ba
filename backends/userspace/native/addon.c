/*
 * Node-API surface of the engine (one engine per process: the datapath host).
 *
 *   start({ mode, tunName, localIP, port, mtu, gateway, offload, outerTtl, sockbuf })
 *       -> { ifindex, tunCreated, tunOffload, udpGso, udpGro, rcvbuf, sndbuf }
 *   setPeers(Uint32Array [subnet, prefixLen, publicIP, port] * n)   addresses as host-order integers
 *   counters() -> { txPackets, ... }       fatal() -> string | null
 *   stop()                                  deleteTun(name)
 *
 * Errors are thrown as Error with `code` = the errno name where there is one.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "tun.h"

static struct engine *g_engine;

#define CHECK(call)                                            \
  do {                                                         \
    if ((call) != napi_ok) {                                   \
      napi_throw_error(env, "EINVAL", "Node-API call failed: " #call); \
      return NULL;                                             \
    }                                                          \
  } while (0)

static const char *errno_code(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENOMEM: return "ENOMEM";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    default: return "EIO";
  }
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

/* Reads obj[key]; 0 when absent. */
static int get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 0;
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return 0;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

static int get_string(napi_env env, napi_value obj, const char *key, char *buf, size_t len) {
  napi_value v;
  size_t n;
  if (!get_prop(env, obj, key, &v)) return 0;
  return napi_get_value_string_utf8(env, v, buf, len, &n) == napi_ok;
}

static int get_int(napi_env env, napi_value obj, const char *key, int fallback) {
  napi_value v;
  int32_t n;
  if (!get_prop(env, obj, key, &v) || napi_get_value_int32(env, v, &n) != napi_ok) return fallback;
  return n;
}

static int get_bool(napi_env env, napi_value obj, const char *key, int fallback) {
  napi_value v;
  bool b;
  if (!get_prop(env, obj, key, &v) || napi_get_value_bool(env, v, &b) != napi_ok) return fallback;
  return b;
}

static void set_num(napi_env env, napi_value obj, const char *key, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_bool(napi_env env, napi_value obj, const char *key, int value) {
  napi_value v;
  napi_get_boolean(env, value != 0, &v);
  napi_set_named_property(env, obj, key, v);
}

static int parse_ip(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  char text[INET_ADDRSTRLEN + 1] = {0};
  if (!get_string(env, obj, key, text, sizeof(text))) return 0;
  struct in_addr a;
  if (inet_pton(AF_INET, text, &a) != 1) return 0;
  *out = a.s_addr;
  return 1;
}

static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (g_engine) {
    napi_throw_error(env, "EBUSY", "the engine is already running in this process");
    return NULL;
  }
  if (argc < 1) {
    napi_throw_type_error(env, "EINVAL", "start(config) needs a config object");
    return NULL;
  }
  struct engine_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  char mode[8] = {0};
  get_string(env, argv[0], "mode", mode, sizeof(mode));
  if (strcmp(mode, "udp") == 0) cfg.mode = MODE_UDP;
  else if (strcmp(mode, "ipip") == 0) cfg.mode = MODE_IPIP;
  else {
    napi_throw_type_error(env, "EINVAL", "config.mode must be \"udp\" or \"ipip\"");
    return NULL;
  }
  if (!get_string(env, argv[0], "tunName", cfg.tun_name, sizeof(cfg.tun_name)) || !cfg.tun_name[0]) {
    napi_throw_type_error(env, "EINVAL", "config.tunName must be a device name of 1..15 characters");
    return NULL;
  }
  if (!parse_ip(env, argv[0], "localIP", &cfg.local_ip) || !parse_ip(env, argv[0], "gateway", &cfg.gateway_ip)) {
    napi_throw_type_error(env, "EINVAL", "config.localIP and config.gateway must be IPv4 addresses");
    return NULL;
  }
  int port = get_int(env, argv[0], "port", 8285);
  if (port < 1 || port > 65535) {
    napi_throw_range_error(env, "EINVAL", "config.port must be 1..65535");
    return NULL;
  }
  cfg.port = (uint16_t)port;
  cfg.mtu = get_int(env, argv[0], "mtu", 0);
  cfg.offload = get_bool(env, argv[0], "offload", 1);
  cfg.outer_ttl = get_int(env, argv[0], "outerTtl", 64);
  cfg.sockbuf = get_int(env, argv[0], "sockbuf", 8 << 20);

  char err[256] = {0};
  struct engine *e;
  int rc = engine_start(&cfg, &e, err, sizeof(err));
  if (rc != 0) {
    napi_throw_error(env, strcmp(err, TUN_MISSING_MESSAGE) == 0 ? "ENOTUN" : errno_code(-rc), err);
    return NULL;
  }
  g_engine = e;
  napi_value out;
  CHECK(napi_create_object(env, &out));
  set_num(env, out, "ifindex", e->info.ifindex);
  set_bool(env, out, "tunCreated", e->info.tun_created);
  set_num(env, out, "mtu", e->info.mtu);
  set_bool(env, out, "acceptLocal", e->info.accept_local);
  set_bool(env, out, "tunOffload", e->info.tun_offload);
  set_bool(env, out, "udpGso", e->info.udp_gso);
  set_bool(env, out, "udpGro", e->info.udp_gro);
  set_num(env, out, "rcvbuf", e->info.rcvbuf);
  set_num(env, out, "sndbuf", e->info.sndbuf);
  return out;
}

static napi_value set_peers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!g_engine) {
    napi_throw_error(env, "ENOENT", "the engine is not running");
    return NULL;
  }
  bool is_typed = false;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is_typed) != napi_ok || !is_typed) {
    napi_throw_type_error(env, "EINVAL", "setPeers takes a Uint32Array of [subnet, prefixLen, publicIP, port] quadruples");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
  if (type != napi_uint32_array || length % 4 != 0) {
    napi_throw_type_error(env, "EINVAL", "setPeers takes a Uint32Array whose length is a multiple of 4");
    return NULL;
  }
  size_t n = length / 4;
  const uint32_t *q = data;
  struct peer_spec *specs = calloc(n ? n : 1, sizeof(*specs));
  if (!specs) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    specs[i].subnet = q[4 * i];
    specs[i].prefix_len = (uint8_t)(q[4 * i + 1] > 32 ? 32 : q[4 * i + 1]);
    specs[i].public_ip = q[4 * i + 2];
    specs[i].port = (uint16_t)q[4 * i + 3];
  }
  struct peer_table *t = peer_table_build(specs, n);
  free(specs);
  if (!t) {
    napi_throw_error(env, "ENOMEM", "out of memory building the peer table");
    return NULL;
  }
  engine_set_peers(g_engine, t);
  return undefined(env);
}

static napi_value counters(napi_env env, napi_callback_info info) {
  napi_value out;
  CHECK(napi_create_object(env, &out));
  struct engine *e = g_engine;
  if (!e) return out;
  const struct send_counters *s = &e->sc;
  const struct receive_counters *r = &e->rc;
  set_num(env, out, "txPackets", (double)READ(s->tx_packets));
  set_num(env, out, "txBytes", (double)READ(s->tx_bytes));
  set_num(env, out, "noRoute", (double)READ(s->no_route));
  set_num(env, out, "icmpSent", (double)READ(s->icmp_sent));
  set_num(env, out, "ttlExpired", (double)READ(s->ttl_expired));
  set_num(env, out, "notIpv4", (double)READ(s->not_ipv4));
  set_num(env, out, "malformedTx", (double)READ(s->malformed));
  set_num(env, out, "sendErrors", (double)READ(s->send_errors));
  set_num(env, out, "tunReads", (double)READ(s->tun_reads));
  set_num(env, out, "superPackets", (double)READ(s->super_packets));
  set_num(env, out, "rxPackets", (double)READ(r->rx_packets));
  set_num(env, out, "rxBytes", (double)READ(r->rx_bytes));
  set_num(env, out, "unknownSource", (double)READ(r->unknown_source));
  set_num(env, out, "malformedRx", (double)READ(r->malformed));
  set_num(env, out, "writeErrors", (double)READ(r->write_errors));
  set_num(env, out, "datagrams", (double)READ(r->datagrams));
  set_num(env, out, "tunWrites", (double)READ(r->tun_writes));
  set_num(env, out, "merged", (double)READ(r->merged));
  return out;
}

static napi_value fatal(napi_env env, napi_callback_info info) {
  const char *f = g_engine ? engine_fatal(g_engine) : NULL;
  napi_value v;
  if (!f) {
    napi_get_null(env, &v);
    return v;
  }
  CHECK(napi_create_string_utf8(env, f, NAPI_AUTO_LENGTH, &v));
  return v;
}

static napi_value stop(napi_env env, napi_callback_info info) {
  engine_stop(g_engine);
  g_engine = NULL;
  return undefined(env);
}

static napi_value delete_tun(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1] = {0};
  size_t n;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &n) != napi_ok || n == 0 || n >= IFNAMSIZ) {
    napi_throw_type_error(env, "EINVAL", "deleteTun(name) needs a device name of 1..15 characters");
    return NULL;
  }
  char err[256] = {0};
  int rc = tun_delete(name, err, sizeof(err));
  if (rc != 0) {
    napi_throw_error(env, strcmp(err, TUN_MISSING_MESSAGE) == 0 ? "ENOTUN" : errno_code(-rc), err);
    return NULL;
  }
  return undefined(env);
}

/* Deliberately crashes the process (SIGSEGV in native code), for the supervisor's tests. */
static napi_value crash(napi_env env, napi_callback_info info) {
  volatile int *volatile nowhere = NULL;
  *nowhere = 1;
  return undefined(env);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", NULL, start, NULL, NULL, NULL, napi_default, NULL},
      {"setPeers", NULL, set_peers, NULL, NULL, NULL, napi_default, NULL},
      {"counters", NULL, counters, NULL, NULL, NULL, napi_default, NULL},
      {"fatal", NULL, fatal, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, stop, NULL, NULL, NULL, napi_default, NULL},
      {"deleteTun", NULL, delete_tun, NULL, NULL, NULL, napi_default, NULL},
      {"crash", NULL, crash, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
