#!/bin/sh
# COLO checkpoint benchmark (see bench/README.md); build first: ./mvnw -q -B -o package -DskipTests
# Runs from a private copy of the jar: a rebuild of target/ during the run (other work on the
# same tree) would otherwise break class loading in the running JVMs.
cd "$(dirname "$0")/.." || exit 2
jar=$(mktemp "${TMPDIR:-/tmp}/multifd-colo-bench.XXXXXX.jar") || exit 2
trap 'rm -f "$jar"' EXIT INT TERM
cp target/multifd-colo-bench.jar "$jar" || exit 2
"${JAVA_HOME:+$JAVA_HOME/bin/}java" -Djava.awt.headless=true --enable-native-access=ALL-UNNAMED -Xmx2g -XX:MaxDirectMemorySize=4g -cp "$jar" dev.multifdcolo.bench.colo.ColoBench "$@"
