//! `kv`: the command-line tool of the kv storage engine.
//!
//! Not built yet: it will offer `bench`, `get`/`put`/`scan`, `inspect`/`verify` of
//! files, `stress`, and `serve`/`follow`. Until then it says so and exits with status 2.

fn main() -> std::process::ExitCode {
    #[expect(clippy::print_stderr, reason = "a binary's diagnostic to its user")]
    {
        eprintln!("kv: the command-line tool is not built yet (see the kv-tool README)");
    }
    std::process::ExitCode::from(2)
}
