#!/bin/sh
# Write the broker's password file from the environment (compose: the mqtt-auth service;
# Kubernetes: the broker's init container). Accounts, all known to broker/acl:
#   worker            MQTT_WORKER_PASSWORD   the inference workers (one account, own client ids)
#   admin             MQTT_ADMIN_PASSWORD    operators and the health check ($SYS)
#   <prefix>-<n>      MQTT_DEVICE_PASSWORD   DEVICES simulated devices, ids as `iotstream sim`
#                                            makes them (zero-padded to the width of DEVICES-1)
# Optional: BRIDGE_NAME + MQTT_BRIDGE_PASSWORD adds an edge site's bridge account.
# Real device fleets get their own secrets with `iotstream broker add-devices` instead.
set -eu
out=${PASSWD_FILE:-/mosquitto/auth/passwd}
: "${MQTT_WORKER_PASSWORD:?MQTT_WORKER_PASSWORD is required}"
: "${MQTT_ADMIN_PASSWORD:?MQTT_ADMIN_PASSWORD is required}"
devices=${DEVICES:-0}
prefix=${DEVICE_PREFIX:-sim}
tmp="$out.tmp"
rm -f "$tmp"
mosquitto_passwd -c -b "$tmp" worker "$MQTT_WORKER_PASSWORD"
mosquitto_passwd -b "$tmp" admin "$MQTT_ADMIN_PASSWORD"
if [ -n "${BRIDGE_NAME:-}" ]; then
  mosquitto_passwd -b "$tmp" "$BRIDGE_NAME" "${MQTT_BRIDGE_PASSWORD:?MQTT_BRIDGE_PASSWORD is required with BRIDGE_NAME}"
fi
if [ "$devices" -gt 0 ]; then
  : "${MQTT_DEVICE_PASSWORD:?MQTT_DEVICE_PASSWORD is required when DEVICES > 0}"
  width=$(printf '%s' "$((devices - 1))" | wc -c)
  i=0
  while [ "$i" -lt "$devices" ]; do
    mosquitto_passwd -b "$tmp" "$(printf "%s-%0${width}d" "$prefix" "$i")" "$MQTT_DEVICE_PASSWORD"
    i=$((i + 1))
  done
fi
chmod 0600 "$tmp"
# mosquitto (uid 1883 in the official image) must read it; only root may hand it over.
if [ "$(id -u)" = 0 ]; then chown "${PASSWD_OWNER:-1883:1883}" "$tmp"; fi
mv "$tmp" "$out"
echo "make-passwd: wrote $out (worker, admin, $devices device accounts${BRIDGE_NAME:+, $BRIDGE_NAME})"
