#!/bin/sh
# proxymgr %post (EL). $1: 1 on a first install, 2 or more on an upgrade.
# Registers the init script; never starts proxymgr: the init script starts it only once ENABLED=1 in
# /etc/sysconfig/proxymgr, and under systemd the unit stays disabled until `systemctl enable --now proxymgr`.
mkdir -p /var/lib/proxymgr /var/log/proxymgr
chmod 0750 /var/lib/proxymgr /var/log/proxymgr

if [ "$1" -eq 1 ]; then
	# proxymgr runs HAProxy itself; the distribution's haproxy service would hold the same ports.
	echo "proxymgr: proxymgr runs HAProxy itself: stopping and disabling the haproxy service" >&2
	if [ -d /run/systemd/system ]; then
		systemctl disable --now haproxy.service >/dev/null 2>&1 || :
	else
		if [ -x /etc/rc.d/init.d/haproxy ]; then
			/etc/rc.d/init.d/haproxy stop >/dev/null 2>&1 || :
		fi
		if command -v chkconfig >/dev/null 2>&1; then
			chkconfig haproxy off >/dev/null 2>&1 || :
		fi
	fi
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
elif command -v chkconfig >/dev/null 2>&1; then
	# Not under systemd: chkconfig would otherwise forward to `systemctl enable`.
	chkconfig --add proxymgr || :
fi
exit 0
