# The developer commands, in one place (`just --list`; `just` is Debian's and crates.io's
# `just`). Every recipe is a plain command that also works without `just`.

# A real benchmark: the quick-start plan against the embedded simulator.
quickstart:
    cargo run --release -p coebench-runner -- run --plan examples/quickstart.yaml

# The whole CI: prerequisites, chart and example checks, fmt, clippy, every test (the README's test command).
ci:
    bash .ci/run

# Format everything.
fmt:
    cargo fmt --all

# Lints as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Every test of one crate: coebench-plan, coebench-support, coebench-simulator, coebench-runner or coebench-operator.
test crate:
    cargo nextest run -p {{crate}}

# The operator's tests without the chart (Python) and Prometheus ones.
test-operator-fast:
    cargo nextest run -p coebench-operator -E 'not test(/^chart::|^metrics::/)'

# The end-to-end suite against the cluster of $KUBECONFIG (ignored by default; its fake-API-server twin runs in CI).
e2e:
    cargo nextest run -p coebench-operator --run-ignored only -E 'test(/^e2e::/)'

# Regenerate crds/, the chart's CRDs and docs/crd-reference.md from the Rust types.
crds:
    cargo run --bin crdgen

# The endpoint simulator on a port, with its ground-truth log.
simulate port="8080":
    cargo run --release -p coebench-runner -- simulate --listen 127.0.0.1:{{port}} --truth-log truth.jsonl

# The simulator's scale benchmark (docs/performance.md).
bench-simulator:
    cargo bench -p coebench-simulator --bench simulator_scale

# The client's fidelity benchmark against the simulator's truth (docs/performance.md).
bench-fidelity:
    cargo bench -p coebench-runner --bench fidelity

# The 1,000-stream accuracy test alone, with its figures.
scale-test:
    cargo nextest run -p coebench-runner -E 'test(/^engine_scale::/)' --no-capture
