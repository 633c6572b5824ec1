#!/usr/bin/env bash
# OpenSSL's RSA-2048 speed on this machine, for docs/BENCHMARKS.md's ratios against
# `cargo bench -p p2pchat-tests --bench core` (module rsa_2048). Single core.
#   bash tests/benches/openssl_speed.sh
set -euo pipefail
openssl version
# sign = private-key operation (our PSS sign and OAEP decrypt), verify = public-key
# operation (our PSS verify and OAEP encrypt).
openssl speed -seconds 10 rsa2048 2>/dev/null | grep -E '^rsa 2048|sign/s'
# Key generation: 20 keys; the cost of starting openssl is measured and subtracted.
n=20
start=$(date +%s.%N)
for _ in $(seq $n); do openssl version >/dev/null; done
overhead=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
for _ in $(seq $n); do openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 >/dev/null 2>&1; done
total=$(echo "$(date +%s.%N) - $start" | bc)
echo "genpkey rsa2048: $(echo "scale=1; ($total - $overhead) * 1000 / $n" | bc) ms per key (mean of $n)"
