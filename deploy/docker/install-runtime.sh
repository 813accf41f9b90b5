#!/bin/sh
# install-runtime.sh python|perl|ruby
#
# Everything a bridge runtime needs besides the bridge binary: the
# interpreter and the Debian packages its runner imports, the `bridge` system
# user, and bridge's directories. The Dockerfiles in this directory RUN it;
# deploy/docker_test.go runs it on a Debian 12 host and then serves an app
# with it, so the steps an image is built from are tested without a Docker
# engine. Run as root. Safe to run again: present packages, the user and the
# directories are left as they are.
#
# BRIDGE_APT_CLEAN=1 (set by the Dockerfiles) removes apt's package lists
# afterwards, to keep the image small; on a host they are left alone.
set -eu

family=${1:-}
case "$family" in
python) pkgs="python3 python3-h2 python3-protobuf" ;;
perl) pkgs="perl libprotocol-http2-perl libplack-perl" ;;
ruby) pkgs="ruby ruby-protocol-http2 ruby-google-protobuf ruby-rack" ;;
*)
	echo "usage: $0 python|perl|ruby" >&2
	exit 2
	;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "$0: run as root (it installs Debian packages and creates the bridge user)" >&2
	exit 1
fi

# The user bridge and its runners run as. A fixed id, so that volumes,
# Kubernetes' runAsUser and file ownership agree across images; any free id
# if 10001 is taken on a host.
uid=10001
if ! getent group bridge >/dev/null; then
	if getent group "$uid" >/dev/null; then groupadd --system bridge; else groupadd --system --gid "$uid" bridge; fi
fi
if ! getent passwd bridge >/dev/null; then
	uidopt="--uid $uid"
	if getent passwd "$uid" >/dev/null; then uidopt=""; fi
	# shellcheck disable=SC2086 # uidopt is empty or two words
	useradd --system $uidopt --gid bridge --home-dir /var/lib/bridge --no-create-home \
		--shell /usr/sbin/nologin --comment "bridge application server" bridge
fi

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-runtime: installing$missing"
	apt-get update -qq
	# shellcheck disable=SC2086 # one word per package
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ "${BRIDGE_APT_CLEAN:-}" = 1 ]; then
	apt-get clean
	rm -rf /var/lib/apt/lists/*
fi

# /etc/bridge: the config (root's; bridge only reads it).
# /srv/app: the app (root's: the app cannot rewrite itself).
# /run/bridge: the sockets; only bridge writes there, nginx may enter.
# /var/lib/bridge: bridge's home; cache/ holds the extracted runner shims,
#   which must be writable by nobody else (BRIDGE_CACHE_DIR).
install -d -m 0755 -o root -g root /etc/bridge /srv/app
install -d -m 0755 -o bridge -g bridge /run/bridge
install -d -m 0750 -o bridge -g bridge /var/lib/bridge
install -d -m 0700 -o bridge -g bridge /var/lib/bridge/cache
echo "install-runtime: $family runtime ready (packages: $pkgs; user: bridge)"
