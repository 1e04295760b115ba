#!/usr/bin/env bash
# `npm run image`: builds the container image twill:<version> (package.json's
# version) offline, FROM scratch, with buildah (or podman). The root
# filesystem is assembled here from this machine's installed programs and the
# built project; see Containerfile. Needs a built tree (`npm ci`, which builds
# dist/ and the native engine).
#   TWILL_IMAGE=name:tag       another name (default twill:<version>)
#   TWILL_IMAGE_ROOTFS_ONLY=DIR  only assemble the root filesystem into DIR (no buildah needed)
#   CONTAINERS_STORAGE_DRIVER  passed to buildah as --storage-driver (e.g. vfs where overlay fails)
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD

version=$(node -p 'require("./package.json").version')
image=${TWILL_IMAGE:-twill:$version}

for f in dist/cmd/twilld.js dist/cmd/twill.js dist/cmd/twill-cni.js build/Release/twill-dataplane build/Release/twill-wg-run build/Release/twill_netlink_events.node; do
  [ -e "$f" ] || { echo "build-image: $f is missing: run 'npm ci' (or 'npm run build' and 'npm run build:native') first" >&2; exit 1; }
done

builder=
if [ -z "${TWILL_IMAGE_ROOTFS_ONLY:-}" ]; then
  if command -v buildah >/dev/null 2>&1; then builder=buildah
  elif command -v podman >/dev/null 2>&1; then builder=podman
  else echo "build-image: neither buildah nor podman is installed (apt-get install buildah)" >&2; exit 1
  fi
fi

stage=$(mktemp -d /var/tmp/twill-image.XXXXXX)
trap 'rm -rf "$stage"' EXIT
rootfs=${TWILL_IMAGE_ROOTFS_ONLY:-$stage/rootfs}
mkdir -p "$rootfs"
# Debian's merged /usr: /bin, /sbin, /lib and /lib64 are links into /usr.
mkdir -p "$rootfs"/usr/bin "$rootfs"/usr/sbin "$rootfs"/usr/lib "$rootfs"/usr/lib64 "$rootfs"/usr/local/bin \
  "$rootfs"/etc "$rootfs"/tmp "$rootfs"/run "$rootfs"/proc "$rootfs"/sys "$rootfs"/dev "$rootfs"/opt/twill
for l in bin sbin lib lib64; do ln -sfn "usr/$l" "$rootfs/$l"; done
chmod 1777 "$rootfs/tmp"

# A file and, for a dynamically linked one, every library ldd names, at their real paths.
libs=()
add_file() {
  local src=$1 real
  real=$(readlink -f "$src")
  mkdir -p "$rootfs$(dirname "$real")"
  cp -L --preserve=mode "$src" "$rootfs$real"
  while read -r lib; do libs+=("$lib"); done < <(ldd "$src" 2>/dev/null | awk '/=> \//{print $3} $1 ~ /^\//{print $1}')
}
prog() {
  local p
  p=$(command -v "$1") || { echo "build-image: $1 is not installed (bash cmd/install-deps.sh installs it)" >&2; exit 1; }
  add_file "$p"
  # A program found through a link (/sbin → /usr/sbin) is also reachable by the name PATH gives it.
  local real; real=$(readlink -f "$p")
  [ "$real" = "/usr/bin/$1" ] || [ "$real" = "/usr/sbin/$1" ] || ln -sfn "$real" "$rootfs/usr/bin/$1"
}

# Node, nft (masquerade and forward rules), wireguard-go (the wireguard backend's engine), bird (the
# bgp backend's BGP daemon), and a shell with what the DaemonSet's install-cni script runs.
for p in node nft wireguard-go bird dash env mkdir mktemp basename chmod cp ln mv rm cat ls; do prog "$p"; done
ln -sfn dash "$rootfs/usr/bin/sh"

# The project: the built JavaScript (no tests or benchmarks), the native parts (the twill-dataplane
# program, twill-wg-run, the netlink event addon), production modules.
app=$rootfs/opt/twill
cp package.json package-lock.json "$app/"
mkdir -p "$app/dist" "$app/build/Release"
for d in cmd lib backends; do cp -a "dist/$d" "$app/dist/"; done
cp build/Release/twill-dataplane build/Release/twill-wg-run build/Release/twill_netlink_events.node "$app/build/Release/"
cp -a node_modules/. "$app/node_modules/" 2>/dev/null || cp -aL node_modules "$app/node_modules"
(cd "$app" && npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts >/dev/null 2>&1) \
  || { echo "build-image: npm prune --omit=dev failed in $app" >&2; exit 1; }
rm -rf "$app/node_modules/.bin" "$app/node_modules/.package-lock.json"
chmod 0755 "$app"/dist/cmd/*.js
for b in twilld twill twill-cni; do ln -sfn "/opt/twill/dist/cmd/$b.js" "$rootfs/usr/local/bin/$b"; done
# Native code (the dataplane program, the addons: netlink events, netlink, cap) and its libraries.
while read -r so; do
  while read -r lib; do libs+=("$lib"); done < <(ldd "$so" 2>/dev/null | awk '/=> \//{print $3}')
done < <(find "$app" -name '*.node' -o -name twill-dataplane -type f -o -name twill-wg-run -type f)

# The libraries, once each (a library's own dependencies are in ldd's list already).
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
for lib in "${libs[@]}"; do
  real=$(readlink -f "$lib")
  mkdir -p "$rootfs$(dirname "$real")"
  [ -e "$rootfs$real" ] || cp -L "$lib" "$rootfs$real"
  # Keep the name the program asks for (libc.so.6 → libc.so.6 is itself; libfoo.so.1 → libfoo.so.1.2.3).
  name_dir=$(readlink -f "$(dirname "$lib")")
  [ "$name_dir/$(basename "$lib")" = "$real" ] || ln -sfn "$real" "$rootfs$name_dir/$(basename "$lib")"
done

# Enough of /etc for root, name lookups and https:// etcd endpoints without --etcd-cafile.
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$rootfs/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
fi

# The image must run: every program starts inside the root filesystem.
chroot "$rootfs" /usr/bin/node /opt/twill/dist/cmd/twilld.js --version >/dev/null \
  || { echo "build-image: twilld does not start inside the assembled root filesystem" >&2; exit 1; }
chroot "$rootfs" /usr/sbin/nft --version >/dev/null || { echo "build-image: nft does not start inside the root filesystem" >&2; exit 1; }

if [ -n "${TWILL_IMAGE_ROOTFS_ONLY:-}" ]; then
  trap - EXIT; rm -rf "$stage"
  echo "build-image: root filesystem in $rootfs ($(du -sh "$rootfs" | cut -f1))"
  exit 0
fi

cp Containerfile "$stage/Containerfile"
storage=()
[ -z "${CONTAINERS_STORAGE_DRIVER:-}" ] || storage=(--storage-driver "$CONTAINERS_STORAGE_DRIVER")
echo "build-image: building $image with $builder ($(du -sh "$rootfs" | cut -f1) root filesystem)"
if [ "$builder" = buildah ]; then
  buildah "${storage[@]}" bud --quiet --layers=false -f "$stage/Containerfile" -t "$image" "$stage" >/dev/null
  size=$(buildah "${storage[@]}" images --format '{{.Size}}' "$image" | head -1)
else
  podman "${storage[@]}" build --quiet -f "$stage/Containerfile" -t "$image" "$stage" >/dev/null
  size=$(podman "${storage[@]}" images --format '{{.Size}}' "$image" | head -1)
fi
echo "build-image: built $image ($size)"
