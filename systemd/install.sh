#!/bin/sh
# Installs nodedrift as a host service, or removes it.
#
#   systemd/install.sh install      # also upgrades: replaces the binary and units, keeps the config
#   systemd/install.sh uninstall    # leaves the config and the state directory (it says which)
#
# Variables (make's conventions):
#   BINARY   the nodedrift binary to install (default: target/release/nodedrift of this tree;
#            build it with `cargo build --release --locked`)
#   PREFIX   where the binary and units go (default /usr/local): $PREFIX/bin/nodedrift, the
#            units in $PREFIX/lib/systemd/system (for /usr and /usr/local, which systemd
#            searches) or else in /etc/systemd/system; ExecStart follows PREFIX
#   UNITDIR  overrides the unit directory
#   DESTDIR  staging root prepended to every path written (packaging, tests). With DESTDIR
#            set, systemctl is not called.
# Fixed paths, named by the units: the config /etc/nodedrift/config.yaml (and the optional
# /etc/nodedrift/environment), the state directory /var/lib/nodedrift (made by systemd).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/usr/local}
PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR:-}
BINARY=${BINARY:-$here/../target/release/nodedrift}
case $PREFIX in
  /usr | /usr/local) default_unitdir=$PREFIX/lib/systemd/system ;;
  *) default_unitdir=/etc/systemd/system ;;
esac
UNITDIR=${UNITDIR:-$default_unitdir}

CONFDIR=/etc/nodedrift
CONFIG=$CONFDIR/config.yaml
STATEDIR=/var/lib/nodedrift
BIN=$PREFIX/bin/nodedrift
EXAMPLE=$PREFIX/share/nodedrift/config.example.yaml
UNITS="nodedrift.service nodedrift-check.service nodedrift-check.timer"

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# systemctl only on the live system (no DESTDIR) when systemd is running.
live_systemd() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

install_all() {
  [ -f "$BINARY" ] && [ -x "$BINARY" ] ||
    die "no executable binary at $BINARY: build it (cargo build --release --locked) or set BINARY"
  for u in $UNITS config.yaml; do
    [ -f "$here/$u" ] || die "missing $here/$u"
  done
  # An upgrade must not restart the agent into a config the new binary rejects: check first,
  # before anything is replaced.
  if [ -f "$DESTDIR$CONFIG" ]; then
    "$BINARY" config validate "$DESTDIR$CONFIG" >/dev/null ||
      die "$DESTDIR$CONFIG is not valid for the new binary (above); fix it, then install again"
  fi

  # The binary: copied beside the old one, then renamed over it (a running agent keeps its own).
  install -d -m 0755 "$DESTDIR$PREFIX/bin"
  install -m 0755 "$BINARY" "$DESTDIR$BIN.new"
  mv -f "$DESTDIR$BIN.new" "$DESTDIR$BIN"
  say "installed $BIN"

  # The units, with ExecStart's path following PREFIX. Local changes belong in drop-ins
  # (systemctl edit), so these files are replaced on every install.
  install -d -m 0755 "$DESTDIR$UNITDIR"
  for u in $UNITS; do
    sed "s|/usr/local/bin/nodedrift|$BIN|g" "$here/$u" >"$DESTDIR$UNITDIR/$u.new"
    chmod 0644 "$DESTDIR$UNITDIR/$u.new"
    mv -f "$DESTDIR$UNITDIR/$u.new" "$DESTDIR$UNITDIR/$u"
    say "installed $UNITDIR/$u"
  done

  # The shipped config: always as the reference example, and as the config only if there is
  # none (yours is never overwritten).
  install -d -m 0755 "$DESTDIR$PREFIX/share/nodedrift"
  install -m 0644 "$here/config.yaml" "$DESTDIR$EXAMPLE"
  install -d -m 0755 "$DESTDIR$CONFDIR"
  if [ -e "$DESTDIR$CONFIG" ]; then
    say "kept $CONFIG (compare with $EXAMPLE)"
  else
    install -m 0644 "$here/config.yaml" "$DESTDIR$CONFIG"
    say "installed $CONFIG"
  fi

  if live_systemd; then
    systemctl daemon-reload
    # An upgrade: a running agent restarts on the new binary; a stopped one stays stopped.
    systemctl try-restart nodedrift.service
    say "next: systemctl enable --now nodedrift.service   (or nodedrift-check.timer, not both)"
  fi
}

uninstall_all() {
  if live_systemd; then
    systemctl disable --now nodedrift.service nodedrift-check.timer || true
    systemctl stop nodedrift-check.service || true
  fi
  for u in $UNITS; do
    rm -f "$DESTDIR$UNITDIR/$u"
    say "removed $UNITDIR/$u"
  done
  rm -f "$DESTDIR$BIN" "$DESTDIR$EXAMPLE"
  rmdir "$DESTDIR$PREFIX/share/nodedrift" 2>/dev/null || true
  say "removed $BIN"
  say "removed $EXAMPLE"
  if live_systemd; then
    systemctl daemon-reload
  fi
  # What stays, on purpose: your settings, and the evidence (the findings' history, the
  # outbox not yet delivered, the file-integrity baseline).
  for d in "$CONFDIR" "$STATEDIR" "/etc/systemd/system/nodedrift.service.d" \
           "/etc/systemd/system/nodedrift-check.service.d"; do
    if [ -e "$DESTDIR$d" ]; then
      say "left $d"
      left="${left:-} $d"
    fi
  done
  if [ -n "${left:-}" ]; then
    say "to remove those too: rm -rf$left"
  fi
}

case ${1:-} in
  install) install_all ;;
  uninstall) uninstall_all ;;
  *)
    say "usage: [DESTDIR=dir] [PREFIX=/usr/local] [BINARY=file] $0 install|uninstall" >&2
    exit 64
    ;;
esac
