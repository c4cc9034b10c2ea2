# Sourced by the install-*.sh scripts: `apt_guard TOOL TEST` exits the
# calling script with 0 and a message naming TEST (the test that will then
# be skipped) when it cannot install TOOL: not root, or no apt-get.
apt_guard() {
    if [ "$(id -u)" != "0" ]; then
        echo "install-$1: not root, cannot install $1; the $2 will be skipped" >&2
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-$1: apt-get not found, cannot install $1; the $2 will be skipped" >&2
        exit 0
    fi
}
