#!/usr/bin/env bash
# Runs inside the throwaway systemd that `make demo` boots (tests/sandbox.py): nothing here
# reaches the host. $1 is the virtualenv holding masktool.
set -uo pipefail
VENV="$1"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$VENV/bin:$PATH" SYSTEMD_PAGER= SYSTEMD_COLORS=0

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[36m# %s\033[0m\n' "$*"; "$@"; rc=$?; printf '\033[2m(exit %d)\033[0m\n' "$rc"; return 0; }

step "A few demo units in /usr/local/lib/systemd/system (vendor units, as a package would ship)"
U=/usr/local/lib/systemd/system
mkdir -p "$U"
for n in telnetd ntp; do
    printf '[Unit]\nDescription=demo %s\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' "$n" > "$U/demo-$n.service"
done
printf '[Unit]\nDescription=demo worker %%i\n[Service]\nExecStart=/bin/sleep infinity\n' > "$U/demo-worker@.service"
systemctl daemon-reload
systemctl start demo-telnetd.service demo-worker@1.service demo-worker@2.service
systemctl mask --now demo-ntp.service >/dev/null 2>&1
systemctl list-units --no-legend 'demo-*' | sed 's/^/  /'

step "The policy: /etc/masktool/policy.yaml"
install -D -m 0644 -o root -g root "$HERE/policies/examples/demo.yaml" /etc/masktool/policy.yaml
sed 's/^/  /' /etc/masktool/policy.yaml

step "masktool validate"
run masktool validate
step "masktool check: an audit; exit 1 means drift"
run masktool check
step "masktool plan: what apply would do"
run masktool plan
step "masktool apply: one batched call per scope, one reload, stop jobs, then verification"
run masktool apply
step "What systemd says now"
run systemctl status demo-telnetd.service --no-pager --lines=0
run systemctl start demo-telnetd.service
run systemctl start demo-worker@3.service
run systemctl is-enabled demo-ntp.service
step "masktool why: the rule, its file:line and reason, and the host's view"
run masktool why demo-telnetd.service
run masktool why demo-worker@1.service
step "The daemon: masktool.service (Type=notify, hardened), installed as a package would"
run systemctl start masktool.service
run systemctl status masktool.service --no-pager --lines=0
systemd-analyze security masktool.service --no-pager 2>/dev/null | tail -1

step "Drift: an admin unmasks a unit by hand; the daemon puts the mask back at once"
run systemctl unmask demo-telnetd.service
run ls -l /etc/systemd/system/demo-telnetd.service
run systemctl show -p LoadState,ActiveState demo-telnetd.service
step "Drift: someone deletes the link; put back without a daemon-reload"
run rm /etc/systemd/system/debug-shell.service
sleep 0.2
run ls -l /etc/systemd/system/debug-shell.service
step "Drift: someone masks the unit the policy wants unmasked"
run systemctl mask demo-ntp.service
sleep 0.2
run systemctl show -p LoadState demo-ntp.service
sleep 0.3

step "An admin writing a unit file is never taken for a mask (cp and editors create it empty first)"
# Opened for writing, empty for a second: an empty file is a mask, and the policy wants
# demo-ntp unmasked, but masktool waits until the file is closed.
run sh -c 'exec 3> /etc/systemd/system/demo-ntp.service; sleep 1; printf "[Unit]\nDescription=local ntp\n[Service]\nExecStart=/bin/sleep infinity\n" >&3'
run cat /etc/systemd/system/demo-ntp.service
run rm /etc/systemd/system/demo-ntp.service
sleep 0.3

step "The journal, explained by masktool's catalog: journalctl -xeu demo-telnetd.service"
run journalctl -xe --no-pager -u demo-telnetd.service -t masktool -n 1
step "The same entry's fields, for scripts and log shippers"
run journalctl --no-pager -u demo-telnetd.service -t masktool -n 1 -o verbose --output-fields=MASKTOOL_ACTION,MASKTOOL_UNIT,MASKTOOL_WANT,MASKTOOL_HAVE,MASKTOOL_POLICY,MASKTOOL_REASON,MASKTOOL_LATENCY_USEC

step "A policy edit takes effect on reload only; a bad one fails the reload and changes nothing"
cp /etc/masktool/policy.yaml /root/policy.good
printf '  - unit: cups\n' >> /etc/masktool/policy.yaml
sleep 0.5
echo "# saved, not applied: the daemon says so"
run systemctl show -p StatusText masktool.service
run systemctl reload masktool.service
run masktool reload
run systemctl unmask demo-telnetd.service
run systemctl show -p LoadState demo-telnetd.service
install -m 0644 /root/policy.good /etc/masktool/policy.yaml
run systemctl reload masktool.service
run systemctl show -p StatusText masktool.service

step "Rescue: the same engine on an unbooted tree (--root), like systemctl --root"
mkdir -p /srv/rescue/etc/masktool /srv/rescue/etc/systemd/system
ln -s /dev/null /srv/rescue/etc/systemd/system/demo-ntp.service
printf 'version: 1\nunmask:\n  - demo-ntp.service\n' > /srv/rescue/etc/masktool/policy.yaml
chmod 0644 /srv/rescue/etc/masktool/policy.yaml
run masktool check --root /srv/rescue
run masktool apply --root /srv/rescue
step "masktool check: compliant, exit 0"
run masktool check

step "The auditor's evidence: one self-contained HTML page (rules, state, journal since WHEN)"
run masktool report --since -1h -o /root/masktool-report.html
run sh -c "grep -o '<span id=\"verdict\"[^>]*>[^<]*' /root/masktool-report.html | sed 's/.*>//'"

step "Undo: masktool release removes exactly the masks masktool wrote (never an admin's)"
echo "# refused while the daemon enforces them:"
run masktool release demo-telnetd.service
run systemctl stop masktool.service
run masktool release
run systemctl list-unit-files --no-legend 'demo-*'
