#!/usr/bin/env bash
# Installs the system packages twill needs, when missing.
#   bash cmd/install-deps.sh        what the test suite needs (npm test)
#   bash cmd/install-deps.sh lab    only what `npm run lab` needs: etcd,
#                                   iproute2, ping, nft, wireguard-go, bird2 and the native build's
#                                   compiler and headers (no browser, no buildah)
# Debian/Ubuntu only; needs root to install (without root it only reports).
set -euo pipefail
profile=${1:-test}
case "$profile" in
  test|lab) ;;
  *) echo "install-deps: unknown profile '$profile' (use 'test' or 'lab')" >&2; exit 2 ;;
esac

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v bridge >/dev/null 2>&1 || missing+=(iproute2)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
[ -f /usr/include/pcap/pcap.h ] || missing+=(libpcap-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v sysctl >/dev/null 2>&1 || missing+=(procps)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# The wireguard backend's engine where the kernel has no WireGuard (twilld configures it over its socket, no `wg`).
command -v wireguard-go >/dev/null 2>&1 || missing+=(wireguard-go)
# The bgp backend's BGP daemon (twilld starts one per node and talks to its control socket, no birdc).
command -v bird >/dev/null 2>&1 || [ -x /usr/sbin/bird ] || missing+=(bird2)
if [ "$profile" = test ]; then
  command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
  { [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ]; } || missing+=(containernetworking-plugins)
  command -v iptables-restore >/dev/null 2>&1 || missing+=(iptables)
  command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
  # The container image test builds twill's image FROM scratch (no registry, no OCI runtime needed).
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing packages: ${missing[*]}, and no apt-get to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packaged etcd/iperf3 services from starting on install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
