#!/usr/bin/env bash
# Create $SFTP_USER (uid $SFTP_UID) with /scratch (the supercomputer's path_at_rest area, a named
# volume) writable, authorise $SFTP_AUTHORIZED_KEY_FILE, keep host keys, then run sshd in the foreground.
set -euo pipefail
: "${SFTP_USER:?}" "${SFTP_AUTHORIZED_KEY_FILE:?}"
SFTP_UID="${SFTP_UID:-1000}"

mkdir -p /etc/ssh/keys /etc/ssh/authorized_keys /scratch
[ -e /etc/ssh/keys/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/keys/ssh_host_ed25519_key
if ! id "$SFTP_USER" >/dev/null 2>&1; then
    adduser -D -u "$SFTP_UID" -s /sbin/nologin "$SFTP_USER"
    # an account without a password but not locked: sshd refuses locked ('!') accounts
    sed -i "s/^${SFTP_USER}:!/${SFTP_USER}:*/" /etc/shadow
fi
chown "$SFTP_USER" /scratch

for _ in $(seq 1 120); do [ -s "$SFTP_AUTHORIZED_KEY_FILE" ] && break; sleep 1; done
install -m 0644 -o root -g root "$SFTP_AUTHORIZED_KEY_FILE" "/etc/ssh/authorized_keys/${SFTP_USER}"

exec /usr/sbin/sshd -D -e
