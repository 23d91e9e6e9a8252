#!/usr/bin/env bash
# Installs the Debian packages MLC-C needs to build and test. Run as root it installs what is
# missing; run as another user it prints the exact apt-get line and exits 1.
set -euo pipefail
PKGS="build-essential cmake pkg-config libcjson-dev libpcre2-dev libutf8proc-dev zlib1g-dev glslang-tools python3 libmicrohttpd-dev curl
  mesa-vulkan-drivers libvulkan-dev glslang-dev libshaderc-dev glslc spirv-tools
  pocl-opencl-icd ocl-icd-opencl-dev opencl-c-headers clinfo"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "MLC-C needs these Debian packages:$missing" >&2
  echo "Install them with:  sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
