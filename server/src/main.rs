//! The `ripcord` binary; everything it does is in the library.

fn main() -> std::process::ExitCode {
    ripcord_server::main()
}
