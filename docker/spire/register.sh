#!/usr/bin/env bash
# spire-register job: the workload entries of the compose stack, through the SPIRE server's admin
# socket (shared volume). Idempotent: an entry that exists is left alone.
#   node alias   spiffe://$TD/node/$SPIRE_AGENT_CN   <- x509pop:subject:cn:$SPIRE_AGENT_CN
#   workload     spiffe://$TD/airflow/worker         <- unix:uid:$AIRFLOW_UID (the Airflow image's user)
set -euo pipefail
SOCK="${SPIRE_SERVER_SOCKET:-/run/spire/server/api.sock}"
TD="${SPIRE_TRUST_DOMAIN:-hpcs.local}"
CN="${SPIRE_AGENT_CN:-spire-agent}"
UID_SELECTOR="unix:uid:${AIRFLOW_UID:-50000}"
NODE="spiffe://${TD}/node/${CN}"
WORKLOAD="spiffe://${TD}/airflow/worker"

ensure() {  # ensure SPIFFE_ID ARGS... : create the entry unless one with that SPIFFE ID exists
    local id="$1"; shift
    if spire-server entry show -socketPath "$SOCK" -spiffeID "$id" | grep -q "Entry ID"; then
        echo "spire-register: $id exists"
    else
        spire-server entry create -socketPath "$SOCK" -spiffeID "$id" "$@"
    fi
}

ensure "$NODE" -node -selector "x509pop:subject:cn:${CN}"
ensure "$WORKLOAD" -parentID "$NODE" -selector "$UID_SELECTOR"
