# apt_install installs Debian packages, updating the package lists once when needed.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $*; install with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  echo "installing $* (Debian packages)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}
