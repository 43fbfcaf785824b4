//! The Ripcord server binary, built with the end-to-end tests so that they never run a stale
//! build of it (`env!("CARGO_BIN_EXE_ripcord-e2e-server")`).

fn main() -> std::process::ExitCode {
    ripcord_server::main()
}
