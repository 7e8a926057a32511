# Sourced by scripts/setup and scripts/build-image: the one way they install Debian packages.
#
# ensure_packages NAME PKG...: installs those of PKG that are missing (as root), or, not root, says
# which are missing and how to install them, and exits 1. NAME prefixes the messages; `say` prints
# progress if the caller defines it.
ensure_packages() {
  local name=$1 p
  shift
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$name: missing packages: ${missing[*]}. Run as root (sudo scripts/$name) or install them: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  if declare -F say >/dev/null; then say "installing ${missing[*]}"; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
