# Sourced by the h2load benchmarks: the bootstrap, h2load (Debian's nghttp2-client), the debug
# CLI and the release service, a scratch folder, free loopback ports, and the service settings
# they run with.
./scripts/bootstrap.sh >/dev/null
if ! command -v h2load >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build -q --workspace --bins
cargo build -q --release -p foresight-serve --bin foresight-serve

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The bundled history ends in the past: without a longer data-age limit every margin would fall
# back to the reactive rate as stale, and the forward-looking path would not be measured.
printf '[limits]\nmax_age_secs = 1e10\n' > "$work/serve.toml"
