#!/bin/sh
# proxymgr %postun (EL). $1: 0 when the package is erased, 1 or more on an upgrade.
if [ "$1" -ge 1 ]; then
	# A running proxymgr gets the new binary through a hand-over (HAProxy serves throughout); a stopped one
	# stays stopped.
	/etc/rc.d/init.d/proxymgr try-restart >/dev/null 2>&1 || :
else
	# Erased: remove what proxymgr created. rpm itself keeps an edited proxymgr.yml as .rpmsave;
	# /var/log/proxymgr stays for the record.
	rm -rf /run/proxymgr /var/lib/proxymgr
	rm -f /etc/proxymgr/haproxy.cfg /etc/proxymgr/haproxy.cfg.rejected /etc/proxymgr/.haproxy.cfg.*
	# cargo generate-rpm cannot make the package own directories (its `dir = true` assets fail), so rpm
	# leaves the ones it created; remove them once empty.
	rmdir /etc/proxymgr /usr/share/doc/proxymgr/examples /usr/share/doc/proxymgr 2>/dev/null || :
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || :
	fi
fi
exit 0
