#!/usr/bin/env bash
# The test command. Installs what the tests need that cargo cannot (a real containerd, which
# the containerd tests start on a socket in a temp dir), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v containerd >/dev/null 2>&1; then
  echo "tests/run.sh: installing containerd (needed by the containerd tests)" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends containerd >/dev/null
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --locked --doc "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
