#!/bin/sh
# A self-signed certificate for trying the Compose stack (tls.crt / tls.key in this folder).
# In a hospital, put the certificate your PKI issues here instead; never commit either file.
set -eu
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:3072 -sha256 -days 30 -nodes \
  -keyout tls.key -out tls.crt -subj "/CN=${1:-radvigil.local}" \
  -addext "subjectAltName=DNS:${1:-radvigil.local},DNS:localhost"
chmod 600 tls.key
