{
  # The userspace datapath engine (backends/userspace/native): the Node-API
  # addon the datapath host process loads, and twill-dataplane, the same
  # engine as a program of its own. npm builds both with node-gyp on install
  # (`npm run build:native` by hand).
  "targets": [
    {
      "target_name": "twill_userspace",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "backends/userspace/native/addon.c",
            "backends/userspace/native/engine.c",
            "backends/userspace/native/gro.c",
            "backends/userspace/native/icmp.c",
            "backends/userspace/native/peers.c",
            "backends/userspace/native/receive.c",
            "backends/userspace/native/send.c",
            "backends/userspace/native/socket.c",
            "backends/userspace/native/tso.c",
            "backends/userspace/native/tun.c"
          ],
          "libraries": ["-lpthread"]
        }, {
          "sources": ["backends/userspace/native/unsupported.c"]
        }]
      ],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8"]
    }
,
    {
      "target_name": "twill-dataplane",
      "type": "executable",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "backends/userspace/native/main.c",
            "backends/userspace/native/args.c",
            "backends/userspace/native/control.c",
            "backends/userspace/native/instance.c",
            "backends/userspace/native/report.c",
            "backends/userspace/native/engine.c",
            "backends/userspace/native/gro.c",
            "backends/userspace/native/icmp.c",
            "backends/userspace/native/peers.c",
            "backends/userspace/native/receive.c",
            "backends/userspace/native/send.c",
            "backends/userspace/native/socket.c",
            "backends/userspace/native/tso.c",
            "backends/userspace/native/tun.c"
          ],
          "libraries": ["-lpthread"]
        }, {
          "sources": ["backends/userspace/native/main-unsupported.c"]
        }]
      ],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }

  ]
}
