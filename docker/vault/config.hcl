# Extra configuration of the compose Vault. The official image starts `vault server -dev` with
# -config=/vault/config (this file): dev mode keeps everything in memory, unsealed, with the root
# token $VAULT_ROOT_TOKEN (docker/.env) and a KV v2 engine at secret/. The HPCS server stand-in
# enables KV v2 at kv/ and JWT auth at jwt/ at start. Not for production (use storage, TLS, unsealing).
ui = true
disable_mlock = true
log_level = "info"
