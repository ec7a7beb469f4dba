#!/usr/bin/env bash
# Make the TLS certificates of a PlantWire broker with openssl: a private CA, the broker's server
# certificate (with the host names and addresses clients dial) and client certificates.
#
#   deploy/certs/make-certs.sh [-o DIR] [-d DAYS] [-k ec|rsa] ca
#   deploy/certs/make-certs.sh [-o DIR] [-d DAYS] [-k ec|rsa] server NAME SAN...
#   deploy/certs/make-certs.sh [-o DIR] [-d DAYS] [-k ec|rsa] client NAME...
#
#   -o DIR    where the files go (default: deploy/secrets/tls)
#   -d DAYS   validity (default: 3650 for the CA, 825 for server and client certificates)
#   -k TYPE   key type: ec (P-256, the default) or rsa (3072 bits, for clients that lack ECDSA)
#   SAN       DNS:name or IP:address, e.g. DNS:mosquitto DNS:broker.binh-duong.plant IP:10.20.0.5
#
# Each certificate is DIR/NAME.crt with its key DIR/NAME.key (PEM; the CA is ca.crt and ca.key).
# Existing files are never overwritten: re-issuing a certificate is a deliberate `rm` first, and
# a new CA would lock out every edge device that trusts the old one.
#
# Example (the compose stack of docs/deploy.md):
#   deploy/certs/make-certs.sh ca
#   deploy/certs/make-certs.sh server broker DNS:mosquitto DNS:broker.binh-duong.plant
#   deploy/certs/make-certs.sh client gateway-binh-duong analytics-binh-duong viewer-binh-duong
#   deploy/certs/make-certs.sh client edge-box-dairy          # one per edge device
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

out="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/secrets/tls"
days=""
key_type=ec
while getopts "o:d:k:h" option; do
  case "$option" in
    o) out="$OPTARG" ;;
    d) days="$OPTARG" ;;
    k) key_type="$OPTARG" ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
command="$1"
shift

case "$key_type" in
  ec) key_usage="digitalSignature" ;;
  rsa) key_usage="digitalSignature,keyEncipherment" ;;
  *) echo "make-certs: key type must be ec or rsa, not '$key_type'" >&2; exit 2 ;;
esac
if [ -n "$days" ] && ! [[ "$days" =~ ^[1-9][0-9]*$ ]]; then
  echo "make-certs: -d takes a number of days, not '$days'" >&2
  exit 2
fi

# Keys are readable by their owner only; the folder too.
umask 077

die() {
  echo "make-certs: $*" >&2
  exit 1
}

# Scratch files (requests, extension lists) go in a folder of their own, removed however we exit.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

check_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "'$1' is not a usable certificate name"
  [ "$1" != ca ] || die "'ca' is the CA's own name"
}

need_ca() {
  [ -e "$out/ca.key" ] && [ -e "$out/ca.crt" ] || die "no CA in $out: run '$0 ca' first"
}

refuse_existing() {
  local name
  for name in "$@"; do
    [ ! -e "$out/$name.crt" ] && [ ! -e "$out/$name.key" ] \
      || die "$out/$name.crt or .key exists already; remove both to issue it again"
  done
}

new_key() {
  if [ "$key_type" = ec ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  else
    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$1"
  fi
}

# A fresh random serial: two certificates from one CA must never share one.
serial() {
  echo "0x$(openssl rand -hex 16)"
}

# Made once the arguments are known to be good.
prepare_out() {
  mkdir -p "$out"
  # The folder holds private keys: keep git from ever picking it up, wherever it is.
  [ -e "$out/.gitignore" ] || printf '*\n' >"$out/.gitignore"
}

make_ca() {
  [ ! -e "$out/ca.key" ] || die "$out/ca.key exists already; a new CA would lock out every client that trusts this one"
  new_key "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "${days:-3650}" \
    -set_serial "$(serial)" -subj "/O=PlantWire/CN=PlantWire CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$out/ca.crt"
  echo "$out/ca.crt"
}

# sign NAME EXTENDED_KEY_USAGE [subjectAltName value]
sign() {
  local name="$1" purpose="$2" san="${3:-}" said
  local extensions="$work/$name.ext" csr="$work/$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,$key_usage"
    echo "extendedKeyUsage=$purpose"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$extensions"
  new_key "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "/O=PlantWire/CN=$name" -out "$csr"
  # openssl chats on stderr even when all is well; show what it said only when it failed.
  if ! said="$(openssl x509 -req -in "$csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -set_serial "$(serial)" -sha256 -days "${days:-825}" -extfile "$extensions" \
    -out "$out/$name.crt" 2>&1)"; then
    echo "$said" >&2
    die "could not sign $name"
  fi
  echo "$out/$name.crt"
}

case "$command" in
  ca)
    [ $# -eq 0 ] || usage
    prepare_out
    make_ca
    ;;
  server)
    [ $# -ge 2 ] || die "server needs a name and at least one DNS:name or IP:address"
    name="$1"
    shift
    check_name "$name"
    for entry in "$@"; do
      [[ "$entry" =~ ^(DNS|IP):[^,[:space:]]+$ ]] || die "'$entry' is not DNS:name or IP:address"
    done
    need_ca
    refuse_existing "$name"
    # Clients check the broker's name against these (TLS hostname check), not against the CN.
    sign "$name" serverAuth "$(IFS=,; echo "$*")"
    ;;
  client)
    [ $# -ge 1 ] || die "client needs at least one name"
    for name in "$@"; do check_name "$name"; done
    need_ca
    refuse_existing "$@"
    for name in "$@"; do sign "$name" clientAuth; done
    ;;
  *)
    usage
    ;;
esac
