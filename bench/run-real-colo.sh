#!/bin/sh
# Side by side with the real thing (see bench/README.md): a real QEMU 11.1 COLO primary running the
# test guest against a real QEMU 11.1 secondary and against ours, measured on the primary's trace.
# Build first: ./mvnw -q -B -o package -DskipTests. Runs from private copies of both jars (a
# concurrent rebuild of target/ would otherwise break class loading in the running JVMs).
cd "$(dirname "$0")/.." || exit 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/multifd-colo-real.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
cp target/multifd-colo-bench.jar target/multifd-colo.jar "$tmp"/ || exit 2
"${JAVA_HOME:+$JAVA_HOME/bin/}java" -Djava.awt.headless=true -Xmx512m -cp "$tmp/multifd-colo-bench.jar" \
  dev.multifdcolo.bench.colo.RealColoBench --jar "$tmp/multifd-colo.jar" "$@"
