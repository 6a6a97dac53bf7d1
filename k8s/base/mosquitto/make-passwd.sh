#!/bin/sh
# Write the broker's password file and its dynamic security file (who may do what) from the
# environment (compose: the mqtt-auth service mounts this file; Kubernetes: the central and
# edge brokers' init containers, from the ConfigMap mosquitto-config). The only copy.
# Accounts and their roles (the same as iotstream/broker_tools/dynsec.py; a test compares):
#   worker            MQTT_WORKER_PASSWORD   the inference workers (one account, own client ids)
#   ingest            MQTT_INGEST_PASSWORD   the staged intake (`iotstream ingest`): subscribes
#                                            to devices/+/telemetry without $share, nothing else
#   admin             MQTT_ADMIN_PASSWORD    operators and the health check ($SYS)
#   <prefix>-<n>      MQTT_DEVICE_PASSWORD   DEVICES simulated devices, ids as `iotstream sim`
#                                            makes them (zero-padded to the width of DEVICES-1);
#                                            each may use only devices/<its id>/...
# Optional: BRIDGE_NAME + MQTT_BRIDGE_PASSWORD adds an edge site's bridge account.
# Subscriptions are checked when made: a device asking for another device's topic or for a
# $share/... group gets SUBACK "not authorized" (docs/broker.md).
# Real device fleets get their own secrets with `iotstream broker add-devices` instead.
set -eu
out=${PASSWD_FILE:-/mosquitto/auth/passwd}
dynsec=${DYNSEC_FILE:-$(dirname "$out")/dynamic-security.json}
: "${MQTT_WORKER_PASSWORD:?MQTT_WORKER_PASSWORD is required}"
: "${MQTT_INGEST_PASSWORD:?MQTT_INGEST_PASSWORD is required}"
: "${MQTT_ADMIN_PASSWORD:?MQTT_ADMIN_PASSWORD is required}"
devices=${DEVICES:-0}
prefix=${DEVICE_PREFIX:-sim}
tmp="$out.tmp"
rm -f "$tmp" "$dynsec.tmp"
mosquitto_passwd -c -b "$tmp" worker "$MQTT_WORKER_PASSWORD"
mosquitto_passwd -b "$tmp" ingest "$MQTT_INGEST_PASSWORD"
mosquitto_passwd -b "$tmp" admin "$MQTT_ADMIN_PASSWORD"
if [ -n "${BRIDGE_NAME:-}" ]; then
  mosquitto_passwd -b "$tmp" "$BRIDGE_NAME" "${MQTT_BRIDGE_PASSWORD:?MQTT_BRIDGE_PASSWORD is required with BRIDGE_NAME}"
fi

acl() { printf '{"acltype": "%s", "topic": "%s", "allow": true, "priority": 0}' "$1" "$2"; }
client() { printf ',\n  {"username": "%s", "roles": [{"rolename": "%s"}]}' "$1" "$2"; }
device_role() {
  printf ',\n  {"rolename": "device:%s", "acls": [%s, %s, %s, %s]}' "$1" \
    "$(acl publishClientSend "devices/$1/telemetry")" "$(acl publishClientSend "devices/$1/status")" \
    "$(acl subscribeLiteral "devices/$1/inference")" "$(acl publishClientReceive "devices/$1/inference")"
}
ids=""
if [ "$devices" -gt 0 ]; then
  : "${MQTT_DEVICE_PASSWORD:?MQTT_DEVICE_PASSWORD is required when DEVICES > 0}"
  width=$(printf '%s' "$((devices - 1))" | wc -c)
  i=0
  while [ "$i" -lt "$devices" ]; do
    id=$(printf "%s-%0${width}d" "$prefix" "$i")
    mosquitto_passwd -b "$tmp" "$id" "$MQTT_DEVICE_PASSWORD"
    ids="$ids $id"
    i=$((i + 1))
  done
fi
{
  printf '{"defaultACLAccess": {"publishClientSend": false, "publishClientReceive": false, '
  printf '"subscribe": false, "unsubscribe": true},\n "groups": [],\n "clients": [\n'
  printf '  {"username": "worker", "roles": [{"rolename": "worker"}]}'
  client ingest ingest
  client admin admin
  if [ -n "${BRIDGE_NAME:-}" ]; then client "$BRIDGE_NAME" bridge; fi
  for id in $ids; do client "$id" "device:$id"; done
  printf '],\n "roles": [\n  {"rolename": "worker", "acls": [%s, %s, %s, %s, %s, %s, %s]}' \
    "$(acl subscribePattern '$share/+/devices/+/telemetry')" "$(acl subscribePattern '$share/+/devices/+/status')" \
    "$(acl subscribePattern devices/+/telemetry)" "$(acl subscribePattern devices/+/status)" \
    "$(acl publishClientReceive devices/+/telemetry)" "$(acl publishClientReceive devices/+/status)" \
    "$(acl publishClientSend devices/+/inference)"
  printf ',\n  {"rolename": "admin", "acls": [%s, %s, %s, %s, %s, %s, %s, %s]}' \
    "$(acl subscribePattern '#')" "$(acl subscribePattern '$SYS/#')" "$(acl subscribePattern '$CONTROL/dynamic-security/#')" \
    "$(acl publishClientReceive '#')" "$(acl publishClientReceive '$SYS/#')" "$(acl publishClientReceive '$CONTROL/dynamic-security/#')" \
    "$(acl publishClientSend '#')" "$(acl publishClientSend '$CONTROL/dynamic-security/#')"
  printf ',\n  {"rolename": "bridge", "acls": [%s, %s, %s, %s]}' \
    "$(acl publishClientSend devices/+/telemetry)" "$(acl publishClientSend devices/+/status)" \
    "$(acl subscribePattern devices/+/inference)" "$(acl publishClientReceive devices/+/inference)"
  printf ',\n  {"rolename": "ingest", "acls": [%s, %s]}' \
    "$(acl subscribePattern devices/+/telemetry)" "$(acl publishClientReceive devices/+/telemetry)"
  for id in $ids; do device_role "$id"; done
  printf '\n ]\n}\n'
} > "$dynsec.tmp"
chmod 0600 "$tmp" "$dynsec.tmp"
# mosquitto (uid 1883 in the official image) must read them; only root may hand them over.
if [ "$(id -u)" = 0 ]; then chown "${PASSWD_OWNER:-1883:1883}" "$tmp" "$dynsec.tmp"; fi
mv "$dynsec.tmp" "$dynsec"
mv "$tmp" "$out"
echo "make-passwd: wrote $out and $dynsec (worker, ingest, admin, $devices device accounts${BRIDGE_NAME:+, $BRIDGE_NAME})"
