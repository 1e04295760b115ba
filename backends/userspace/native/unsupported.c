/* Non-Linux builds: the module loads and says why it cannot run (TUN and the socket options here are Linux's). */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

static napi_value unsupported(napi_env env, napi_callback_info info) {
  napi_throw_error(env, "ENOSYS", "the userspace datapath needs Linux (TUN devices, recvmmsg, UDP GSO)");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  const char *names[] = {"start", "setPeers", "counters", "fatal", "stop", "deleteTun", "crash"};
  for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    napi_value fn;
    napi_create_function(env, names[i], NAPI_AUTO_LENGTH, unsupported, NULL, &fn);
    napi_set_named_property(env, exports, names[i], fn);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
