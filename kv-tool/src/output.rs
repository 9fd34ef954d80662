//! Output: a buffered stdout that ends quietly when its reader goes away.

use std::io::{BufWriter, Stdout, Write};

use crate::error::{CliError, CliResult};

/// Buffered stdout.
#[derive(Debug)]
pub(crate) struct Out {
    inner: BufWriter<Stdout>,
}

fn write_error(e: &std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // `kv scan | head`: the reader has what it wanted.
        std::process::exit(0);
    }
    CliError::data(format!("cannot write to stdout: {e}"))
}

impl Out {
    pub(crate) fn stdout() -> Self {
        Out {
            inner: BufWriter::new(std::io::stdout()),
        }
    }

    /// Prints `text` and a newline.
    pub(crate) fn line(&mut self, text: impl AsRef<str>) -> CliResult {
        let w = &mut self.inner;
        w.write_all(text.as_ref().as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| write_error(&e))
    }

    /// Flushes what was printed.
    pub(crate) fn finish(&mut self) -> CliResult {
        self.inner.flush().map_err(|e| write_error(&e))
    }
}
