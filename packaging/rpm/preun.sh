#!/bin/sh
# proxymgr %preun (EL). $1: 0 when the package is erased, 1 or more on an upgrade (then nothing happens
# here: proxymgr serves on, and %postun restarts it on the new binary).
if [ "$1" -eq 0 ]; then
	# The init script hands over to systemctl when systemd runs this host.
	/etc/rc.d/init.d/proxymgr stop >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl disable proxymgr.service >/dev/null 2>&1 || :
	elif command -v chkconfig >/dev/null 2>&1; then
		chkconfig --del proxymgr || :
	fi
fi
exit 0
