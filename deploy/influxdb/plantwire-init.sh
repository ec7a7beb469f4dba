#!/usr/bin/env bash
# PlantWire's one-time InfluxDB 2.x setup. The influxdb:2 image runs the *.sh files of
# /docker-entrypoint-initdb.d (compose.yaml mounts this folder there) once, on an empty volume,
# right after its own setup made the org and bucket: the influx CLI is then logged in as the
# admin, and DOCKER_INFLUXDB_INIT_ORG and DOCKER_INFLUXDB_INIT_BUCKET_ID name what it made.
#
# 1. A DBRP mapping: database "plantwire", retention policy "autogen" -> the bucket. Grafana's
#    boards and plantwire analytics query with InfluxQL, and the gateway writes through the v1
#    API; both name a database, and this is what makes the bucket answer to that name.
# 2. A v1 login (username and password, limited to the bucket) for each service, with the
#    password from the compose secret of the same name:
#       plantwire-gateway    writes                /run/secrets/influxdb-gateway-password
#       plantwire-analytics  reads and writes      /run/secrets/influxdb-analytics-password
#       grafana              reads                 /run/secrets/influxdb-grafana-password
#    The admin token stays with the admin.
#
# On a volume that was set up already the image skips this script; docs/deploy.md shows the same
# commands for adding a login by hand.
set -euo pipefail

database="${PLANTWIRE_INFLUX_DATABASE:-plantwire}"
org="${DOCKER_INFLUXDB_INIT_ORG:?the influxdb image sets it during its setup}"
bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:?the influxdb image sets it during its setup}"
secrets="${PLANTWIRE_SECRETS:-/run/secrets}"

influx v1 dbrp create --org "$org" --db "$database" --rp autogen --bucket-id "$bucket_id" --default

# v1_login USERNAME PASSWORD_FILE PERMISSION...
v1_login() {
  local username="$1" password_file="$2"
  shift 2
  if [ ! -s "$password_file" ]; then
    echo "plantwire-init: $password_file is missing or empty; no password for $username" >&2
    exit 1
  fi
  # $(<file) drops the trailing newline, as PlantWire and Grafana do when they read the file.
  influx v1 auth create --org "$org" --username "$username" --password "$(<"$password_file")" \
    --description "PlantWire: $username" "$@" >/dev/null
  echo "plantwire-init: v1 login $username created"
}

v1_login plantwire-gateway "$secrets/influxdb-gateway-password" --write-bucket "$bucket_id"
v1_login plantwire-analytics "$secrets/influxdb-analytics-password" \
  --read-bucket "$bucket_id" --write-bucket "$bucket_id"
v1_login grafana "$secrets/influxdb-grafana-password" --read-bucket "$bucket_id"
