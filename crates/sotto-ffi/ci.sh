#!/usr/bin/env bash
# The bindings in CI: builds the Python package into a new virtual
# environment with pip (maturin, as `pip install crates/sotto-ffi` does),
# runs its pytest suite against a sotto-relay built here, and generates the
# Kotlin and Swift sources with this crate's uniffi-bindgen, checking that
# they are produced. Compiling Kotlin or Swift needs toolchains this
# machine does not have (docs/bindings.md).
#
# Needs python3 with venv and pip, openssl (the TLS test's certificates),
# and PyPI for maturin and pytest. Fails on the first error.
set -euo pipefail
cd "$(dirname "$0")/../.."

MATURIN_VERSION=1.16.0
PYTEST_VERSION=9.2.0

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== sotto-ffi: the relay the Python tests start"
cargo build -p sotto-relay --features tls --bin sotto-relay
relay_bin="$target_dir/debug/sotto-relay"
test -x "$relay_bin"

echo "== sotto-ffi: a virtual environment with maturin $MATURIN_VERSION and pytest $PYTEST_VERSION"
python3 -m venv "$work/venv"
venv_python="$work/venv/bin/python"
"$venv_python" -m pip install --quiet --disable-pip-version-check \
    "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION"

echo "== sotto-ffi: pip install crates/sotto-ffi"
# The dev profile shares the workspace's debug build (dependencies are
# optimized there too); a plain `pip install` builds with --release.
# maturin runs from the virtual environment (no build isolation, so the
# pinned version) and finds uniffi-bindgen as a workspace binary.
PATH="$work/venv/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" \
    "$venv_python" -m pip install --quiet --disable-pip-version-check \
    --no-build-isolation ./crates/sotto-ffi
(cd "$work" && "$venv_python" -c 'import sotto; assert sotto.Client and sotto.SottoError')

echo "== sotto-ffi: pytest"
# pytest's exit status 5 (no test collected) fails this script too.
SOTTO_TEST_RELAY_BINARY="$relay_bin" "$venv_python" -m pytest -q -p no:cacheprovider \
    crates/sotto-ffi/python/tests

echo "== sotto-ffi: Kotlin and Swift sources"
cargo build -p sotto-ffi --lib --bin uniffi-bindgen
library="$target_dir/debug/libsotto_ffi.so"
out="$work/bindings"
"$target_dir/debug/uniffi-bindgen" generate --library "$library" \
    --language kotlin --language swift --no-format --out-dir "$out"
check() {
    local file=$1 needle=$2
    if [[ ! -s "$out/$file" ]] || ! grep -q -- "$needle" "$out/$file"; then
        echo "uniffi-bindgen did not produce $file (with '$needle'); produced:" >&2
        find "$out" -type f >&2
        exit 1
    fi
    echo "$file: $(wc -c <"$out/$file") bytes"
}
check sotto/sotto.kt "class Client"
check sotto/sotto.kt "suspend fun \`send\`"
check Sotto.swift "open class Client"
check Sotto.swift "func send(contact: String, body: Data) async throws"
check SottoFFI.h "uniffi_sotto_ffi_fn_method_client_send"
check SottoFFI.modulemap "SottoFFI"
echo "sotto-ffi: bindings built, tested from Python, Kotlin and Swift generated"
