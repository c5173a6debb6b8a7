# Sourced by scripts/*: the Debian packages rpool builds and runs with, installed when missing.
RPOOL_DEBS=(g++ meson ninja-build pkg-config python3
            libboost1.81-dev nlohmann-json3-dev libfmt-dev doctest-dev libssl-dev libcli11-dev
            libbenchmark-dev
            libgoogle-perftools-dev  # TCMalloc, rpoold's allocator
            fiu-utils   # fault injection (fiu-run) in rpool-wal's CLI tests
            strace      # rpool-wal's CLI test traces the fsync of a new data directory's parents
            fio         # the disk's own limits, beside bench/wal and in bench/compare-etcd
            hey         # bench/compare-etcd --hey: a second load generator cross-checks rpool-bench
            curl        # scripts/cluster waits on /readyz with it
            nftables    # network partitions in tests/chaos
            python3-prometheus-client  # cross-checks /metrics against Prometheus' own parser
            python3-jsonschema  # every answer of the integration tests against docs/openapi.json
            prometheus  # promtool checks and unit-tests contrib/prometheus/rpool.rules.yml
            chromium chromium-driver python3-selenium  # the console's browser test (tests/browser)
            clang libclang-rt-14-dev)  # libFuzzer: the fuzz harnesses of tests/fuzz

ensure_deps() {
  local missing=() p
  for p in "${RPOOL_DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
