#!/usr/bin/env bash
# Regenerates the TLS test certificates used by the TLS tests (committed, so the tests need no
# openssl): a test CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a
# second ("rogue") CA with its own client certificate, which our listener must refuse.
# Valid for 50 years. Test material only: the private keys are public.
#   src/scripts/gen-test-certs.sh [OUT_DIR]
set -euo pipefail
out=${1:-$(dirname "$0")/../../modules/qemu-testkit/src/main/resources/dev/multifdcolo/qemu/tls}
mkdir -p "$out"
cd "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=18250

ca() {  # ca NAME CN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days $days -keyout "$1-key.pem" -out "$1-cert.pem" \
        -subj "/O=multifd-colo tests/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() {  # leaf NAME CA CN EXTENSIONS
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -keyout "$1-key.pem" -out "$tmp/$1.csr" \
        -subj "/O=multifd-colo tests/CN=$3" 2>/dev/null
    printf '%b' "$4" > "$tmp/$1.ext"
    openssl x509 -req -sha256 -days $days -in "$tmp/$1.csr" -CA "$2-cert.pem" -CAkey "$2-key.pem" \
        -set_serial "0x$(openssl rand -hex 8)" -extfile "$tmp/$1.ext" -out "$1-cert.pem" 2>/dev/null
}
common='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n'

ca ca "multifd-colo test CA"
leaf server ca localhost "${common}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
leaf client ca "qemu source" "${common}extendedKeyUsage=clientAuth\n"
ca rogue-ca "another CA"
leaf rogue-client rogue-ca "qemu source of another CA" "${common}extendedKeyUsage=clientAuth\n"
# PKCS12 forms (password "changeit") for the keystore configuration and for Java test clients
openssl pkcs12 -export -in server-cert.pem -inkey server-key.pem -name server -passout pass:changeit -out server.p12
openssl pkcs12 -export -in client-cert.pem -inkey client-key.pem -name client -passout pass:changeit -out client.p12
openssl pkcs12 -export -in rogue-client-cert.pem -inkey rogue-client-key.pem -name client -passout pass:changeit -out rogue-client.p12
rm -f ./*.srl
openssl verify -CAfile ca-cert.pem server-cert.pem client-cert.pem
openssl verify -CAfile rogue-ca-cert.pem rogue-client-cert.pem
rm -f ca-key.pem rogue-ca-key.pem   # nothing else is signed with them
ls -l
