{
  # Native parts, built by npm with node-gyp on install (`npm run build:native` by hand):
  # twill_netlink_events: the rtnetlink notification socket twilld reads in its
  #   own process, a small Node-API addon (lib/netlink/native; see event-socket.c for why),
  #   nftables commands run in-process through libnftables (nft-library.c), and
  #   the daemon bundle's text mapped from its file (mapped-source.c), and the
  #   cap on malloc arenas the launcher sets (malloc-arenas.c).
  # twill-wg-run: starts wireguard-go in a mount namespace with its own socket directory.
  # twill-dataplane: the userspace datapath (backends/userspace/native), a plain C
  #   program, not a Node addon, so the engine runs in a process of a few MB.

  "targets": [
    {
      "target_name": "twill_netlink_events",
      "conditions": [
        [
          "OS=='linux'",
          {
            "sources": [
              "lib/netlink/native/event-socket.c",
              "lib/netlink/native/nft-library.c",
              "lib/netlink/native/mapped-source.c",
              "lib/netlink/native/malloc-arenas.c"
            ]
          }
        ]
      ],
      "cflags": [
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-fvisibility=hidden"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ]
    },
    {
      "target_name": "twill-dataplane",
      "type": "executable",
      "conditions": [
        [
          "OS=='linux'",
          {
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
            "libraries": [
              "-lpthread"
            ]
          },
          {
            "sources": [
              "backends/userspace/native/main-unsupported.c"
            ]
          }
        ]
      ],
      "cflags": [
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter"
      ]
    },
    {
      # twill-wg-run: starts wireguard-go with its own /var/run/wireguard (backends/wireguard/native).
      "target_name": "twill-wg-run",
      "type": "executable",
      "conditions": [
        [
          "OS=='linux'",
          {
            "sources": [
              "backends/wireguard/native/private-run.c"
            ]
          }
        ]
      ],
      "cflags": [
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra"
      ]
    }
  ]
}
