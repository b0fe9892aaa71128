#!/usr/bin/env bash
# What `make test` needs of the machine besides Go: the programs the image
# build and the e2e node run. Installs the missing Debian packages with
# apt-get when run as root where apt exists; otherwise names them and fails.
#   podman, buildah       make image (no daemon, no registry)
#   runc                  the runtime of podman/buildah and of the node's containerd (crun fails on hybrid cgroups)
#   busybox-static        the builder stand-in's shell, and the DittoFS stand-in on the node
#   iproute2              the node's veth pair (ip)
#   containernetworking-plugins  the node's CNI bridge, host-local, loopback (/usr/lib/cni)
#   iptables              iptables-save: the node checks it left no rule
#   gcc, libc6-dev        the static pause binary (the pod sandbox image)
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have podman || need+=(podman)
have buildah || need+=(buildah)
have runc || need+=(runc)
have busybox || need+=(busybox-static)
have ip || need+=(iproute2)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || need+=(containernetworking-plugins)
have iptables-save || need+=(iptables)
have gcc || need+=(gcc)
[[ -e /usr/lib/x86_64-linux-gnu/libc.a || -n $(find /usr/lib -name libc.a -print -quit 2>/dev/null) ]] || need+=(libc6-dev)
[[ ${#need[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && have apt-get; then
  echo "setup.sh: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "make test needs these Debian packages: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
