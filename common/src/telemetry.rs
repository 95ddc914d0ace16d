//! One tracing setup for every binary: human-readable lines on stderr, filtered by
//! `RUST_LOG` (default `info`), with colours only when stderr is a terminal (logs
//! that go to files, journald or a supervisor stay plain text).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
