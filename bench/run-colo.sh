#!/bin/sh
# COLO checkpoint benchmark (see bench/README.md); build first: ./mvnw -q -B -o package -DskipTests
cd "$(dirname "$0")/.." && exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" -Djava.awt.headless=true --enable-native-access=ALL-UNNAMED -Xmx2g -XX:MaxDirectMemorySize=4g -cp target/multifd-colo-bench.jar dev.multifdcolo.bench.colo.ColoBench "$@"
