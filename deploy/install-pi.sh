#!/usr/bin/env bash
# Install (or upgrade) edgecl as a systemd service on a bare Raspberry Pi OS 64-bit (Debian
# bookworm or later; any aarch64 or x86_64 systemd Linux with Python >= 3.10 works alike).
# Run from a checkout of the repository, as root:
#
#   sudo deploy/install-pi.sh [--no-apt] [--no-start]
#
#   /opt/edgecl/venv-<time>   the Python environment, built by scripts/image-build-env.sh
#                             (the same steps as the Docker image); /opt/edgecl/venv links to
#                             the current one, the previous one is kept for a rollback
#   /var/lib/edgecl           state: WAL, checkpoints and the int8 backbone (user edgecl)
#   /etc/edgecl/edgecl.env    settings (EDGECL_* lines), made once with a random API token
#   edgecl.service            systemd unit, enabled and (re)started; logs: journalctl -u edgecl
#
# An upgrade keeps /var/lib/edgecl and /etc/edgecl as they are: the learned state and the
# backbone it was learned on stay together. No torch is installed: the default backbone
# ships in the package (for `edgecl backbone build`, run `sh scripts/image-build-env.sh
# deps-build /opt/edgecl/venv` with TORCH_INDEX_URL set to PyTorch's CPU index on x86_64).
set -euo pipefail

prefix=/opt/edgecl
state=/var/lib/edgecl
etc=/etc/edgecl
unit=/etc/systemd/system/edgecl.service
user=edgecl
apt=1
start=1
for arg in "$@"; do
  case $arg in
  --no-apt) apt=0 ;;
  --no-start) start=0 ;;
  -h | --help)
    sed -n '2,19p' "$0"
    exit 0
    ;;
  *)
    echo "unknown option $arg (see --help)" >&2
    exit 2
    ;;
  esac
done

say() { printf 'install-pi: %s\n' "$*"; }
die() {
  printf 'install-pi: error: %s\n' "$*" >&2
  exit 1
}

[[ $(id -u) == 0 ]] || die "run as root (sudo $0)"
src=$(cd "$(dirname "$0")/.." && pwd)
[[ -f $src/pyproject.toml && -f $src/scripts/image-build-env.sh ]] ||
  die "run from a checkout of the edgecl repository"
case $(uname -m) in
aarch64 | x86_64) ;;
*) die "$(uname -m) has no torch/onnxruntime wheels; use a 64-bit OS (Raspberry Pi OS 64-bit)" ;;
esac

if ((apt)); then
  say "installing python3 and python3-venv (apt)"
  # A fresh image's package lists are empty or stale: install would not find the packages.
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3 python3-venv ca-certificates >/dev/null
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "edgecl needs Python >= 3.10, found $(python3 --version)"

if ! id "$user" >/dev/null 2>&1; then
  say "creating system user $user"
  useradd --system --user-group --home-dir "$state" --no-create-home \
    --shell /usr/sbin/nologin "$user"
fi
install -d -o "$user" -g "$user" -m 0750 "$state"
install -d -m 0755 "$prefix"

if [[ ! -e $etc/edgecl.env ]]; then
  say "writing $etc/edgecl.env with a new API token"
  install -d -m 0750 -g "$user" "$etc"
  token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
  umask 027
  cat >"$etc/edgecl.env" <<EOF
# edgecl settings (EDGECL_* variables, see the README); read by edgecl.service.
EDGECL_HOST=0.0.0.0
EDGECL_PORT=8080
EDGECL_API_TOKEN=$token
EOF
  chgrp "$user" "$etc/edgecl.env"
  chmod 0640 "$etc/edgecl.env"
  umask 022
fi

# A new environment beside the running one; the switch is one symlink.
venv=$prefix/venv-$(date +%Y%m%d%H%M%S)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
say "building $venv (a few minutes on a Pi)"
# Build from a copy: pip writes build/ into the source tree.
tar -C "$src" -cf - pyproject.toml README.md requirements scripts/image-build-env.sh \
  edgecl service | tar -C "$build" -xf -
(
  cd "$build"
  PYTHON=python3 sh scripts/image-build-env.sh deps "$venv"
  # Copies the backbone into the build dir: the one in $state is never replaced here.
  sh scripts/image-build-env.sh project "$venv" "$build/data"
)
if ! compgen -G "$state/backbone/*/manifest.json" >/dev/null; then
  say "installing the int8 backbone into $state/backbone"
  install -d -o "$user" -g "$user" -m 0750 "$state/backbone"
  cp -R "$build/data/backbone/." "$state/backbone/"
  chown -R "$user:$user" "$state/backbone"
fi

previous=$(readlink "$prefix/venv" || true)
ln -sfn "$venv" "$prefix/venv.new"
mv -T "$prefix/venv.new" "$prefix/venv"
say "$prefix/venv -> $venv"

install -m 0644 "$src/deploy/systemd/edgecl.service" "$unit"
# Without a running systemd (a chroot preparing an SD card image) the unit is only enabled.
booted=0
[[ -d /run/systemd/system ]] && booted=1
((booted)) && systemctl daemon-reload
systemctl enable edgecl.service >/dev/null
if ((start && !booted)); then
  say "systemd is not running here: edgecl.service is enabled and starts at the next boot"
elif ((start)); then
  systemctl restart edgecl.service
  say "waiting for /health/ready"
  port=$(sed -n 's/^EDGECL_PORT=//p' "$etc/edgecl.env" | tail -1)
  ready=0
  for _ in $(seq 1 120); do
    if python3 -c 'import sys, urllib.request as r
r.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2)' "${port:-8080}" 2>/dev/null; then
      say "edgecl is ready on port ${port:-8080}"
      ready=1
      break
    fi
    systemctl is-active --quiet edgecl.service || {
      journalctl -u edgecl.service -n 30 --no-pager >&2 || true
      die "edgecl.service stopped; see journalctl -u edgecl"
    }
    sleep 1
  done
  ((ready)) || say "warning: not ready after 120 s; see journalctl -u edgecl"
fi

# Keep the previous environment for a rollback (ln -sfn it back), drop older ones.
for old in "$prefix"/venv-*; do
  [[ $old == "$venv" || $old == "$previous" ]] || rm -rf "$old"
done
say "done. Token: $etc/edgecl.env; logs: journalctl -u edgecl -f"
