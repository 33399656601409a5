//! The `remoteproxy-bench` binary; everything is in the library (see `cli`).

fn main() -> std::process::ExitCode {
    remoteproxy_bench::cli::main()
}
