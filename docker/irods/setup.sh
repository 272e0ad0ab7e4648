#!/usr/bin/env bash
# Entry point of the iRODS provider: wait for the catalog, configure the server once (unattended
# JSON rendered from the environment), create the repository's users and collections, then run
# irodsServer in the foreground. Idempotent: /etc/irods/server_config.json marks a done setup
# (/etc/irods, the Vault and the service account's ~/.irods are named volumes).
#
# Environment: IRODS_ZONE, IRODS_HOST_NAME (the name clients use), IRODS_CATALOG_HOST,
# IRODS_DB_PASSWORD, IRODS_ADMIN_PASSWORD, IRODS_ZONE_KEY, IRODS_NEGOTIATION_KEY and
# IRODS_CONTROL_PLANE_KEY (exactly 32 bytes each), IRODS_USERS ("name:password ..." rodsusers),
# IRODS_COLLECTIONS ("collection:owner ..." under /<zone>/dccn), IRODS_STREAMER_USER (write on them).
set -euo pipefail

: "${IRODS_ZONE:?}" "${IRODS_HOST_NAME:?}" "${IRODS_CATALOG_HOST:?}" "${IRODS_DB_PASSWORD:?}"
: "${IRODS_ADMIN_PASSWORD:?}" "${IRODS_ZONE_KEY:?}" "${IRODS_NEGOTIATION_KEY:?}" "${IRODS_CONTROL_PLANE_KEY:?}"
for key in IRODS_NEGOTIATION_KEY IRODS_CONTROL_PLANE_KEY; do
    if [ "$(printf %s "${!key}" | wc -c)" -ne 32 ]; then
        echo "setup: $key must be exactly 32 bytes" >&2; exit 2
    fi
done

echo "setup: waiting for the catalog at ${IRODS_CATALOG_HOST}"
until pg_isready -h "$IRODS_CATALOG_HOST" -d ICAT -U irods -q; do sleep 1; done

as_irods() { su - irods -c "$1"; }

if [ ! -e /etc/irods/server_config.json ]; then
    echo "setup: configuring iRODS zone ${IRODS_ZONE}"
    python3 - <<'PY'
import json, os
e = os.environ
doc = json.load(open("/opt/sdp-irods/unattended_install.json"))
zone, host = e["IRODS_ZONE"], e["IRODS_HOST_NAME"]
doc["admin_password"] = e["IRODS_ADMIN_PASSWORD"]
env = doc["service_account_environment"]
env.update(irods_cwd=f"/{zone}/home/rods", irods_home=f"/{zone}/home/rods", irods_host=host,
           irods_zone_name=zone, irods_server_control_plane_key=e["IRODS_CONTROL_PLANE_KEY"])
cfg = doc["server_config"]
cfg.update(catalog_provider_hosts=[host], negotiation_key=e["IRODS_NEGOTIATION_KEY"],
           server_control_plane_key=e["IRODS_CONTROL_PLANE_KEY"], zone_key=e["IRODS_ZONE_KEY"],
           zone_name=zone)
cfg["host_resolution"]["host_entries"][0]["addresses"] = [host, os.uname().nodename]
pg = cfg["plugin_configuration"]["database"]["postgres"]
pg.update(db_host=e["IRODS_CATALOG_HOST"], db_password=e["IRODS_DB_PASSWORD"])
fd = os.open("/tmp/unattended_install.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as fh:
    json.dump(doc, fh, indent=2)
PY
    python3 /var/lib/irods/scripts/setup_irods.py --json_configuration_file /tmp/unattended_install.json
    rm -f /tmp/unattended_install.json
    # setup_irods.py leaves the server running; stop it, the foreground server starts below.
    as_irods "/var/lib/irods/irodsctl stop" || true
fi

chown -R irods:irods /var/lib/irods/Vault /var/lib/irods/.irods

# Users and collections, with a temporary server (skipped when they exist).
as_irods "/var/lib/irods/irodsctl start"
until as_irods "ils" >/dev/null 2>&1; do sleep 1; done
for item in ${IRODS_USERS:-}; do
    name="${item%%:*}"; password="${item#*:}"
    if ! as_irods "iadmin lu '$name'" | grep -q "user_name: $name"; then
        as_irods "iadmin mkuser '$name' rodsuser && iadmin moduser '$name' password '$password'"
        echo "setup: user $name created"
    fi
done
as_irods "imkdir -p '/${IRODS_ZONE}/dccn'"
for item in ${IRODS_COLLECTIONS:-}; do
    coll="/${IRODS_ZONE}/dccn/${item%%:*}"; owner="${item#*:}"
    as_irods "imkdir -p '$coll' && ichmod -r own '$owner' '$coll'"
    if [ -n "${IRODS_STREAMER_USER:-}" ]; then
        as_irods "ichmod -r write '${IRODS_STREAMER_USER}' '$coll'"
    fi
    # as DCCN's repository: what the streamer creates below gets the collection's access (iRODS checks own rows only)
    as_irods "ichmod -r inherit '$coll'"
done
as_irods "/var/lib/irods/irodsctl stop"

echo "setup: starting irodsServer"
cd /usr/sbin
exec su irods -c "./irodsServer -u"
