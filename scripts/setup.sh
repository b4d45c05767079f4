#!/usr/bin/env bash
# Sets Genie up on Debian 12: installs the Debian packages it needs (when
# missing; as root, or through sudo), then configures and builds into build/.
#   scripts/setup.sh            # install what is missing, configure, build
#   GENIE_BUILD_TYPE=Debug scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libzstd-dev libssl-dev libcli11-dev catch2
  python3 python3-torch python3-numpy python3-pytest python3-torchvision libtorch-dev
  libprotobuf-dev protobuf-compiler libsqlite3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libdpdk-dev libibverbs-dev libtcmalloc-minimal4
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${GENIE_BUILD_TYPE:-RelWithDebInfo}"
cmake --build build -j2
echo "setup: built build/cli/genie"
