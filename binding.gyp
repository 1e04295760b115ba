{
  # Native addons, plain C over Node-API: npm builds them with node-gyp on
  # install (`npx node-gyp rebuild` by hand).
  # twill_userspace: the userspace datapath engine (backends/userspace/native),
  # loaded only by the datapath host process, never by twilld.
  # twill_netlink_events: the rtnetlink notification socket twilld reads in
  # its own process (lib/netlink/native; see event-socket.c for why).
  "targets": [
    {
      "target_name": "twill_netlink_events",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["lib/netlink/native/event-socket.c"]
        }]
      ],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8"]
    },
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
  ]
}
