//! The tool's errors: a usage error (exit 2) or a data error (exit 1), each one line.

use std::fmt;
use std::process::ExitCode;

/// What went wrong, already worded for the user.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line or its input is wrong: exit status 2.
    Usage(String),
    /// The data is damaged, missing or refused: exit status 1.
    Data(String),
}

/// A `Result` whose error is [`CliError`].
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    pub(crate) fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    pub(crate) fn data(msg: impl Into<String>) -> Self {
        CliError::Data(msg.into())
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Data(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (CliError::Usage(m) | CliError::Data(m)) = self;
        // One line, whatever the underlying message holds.
        f.write_str(&m.replace('\n', "; "))
    }
}

impl From<kv_engine::Error> for CliError {
    fn from(e: kv_engine::Error) -> Self {
        match e {
            // A bad key, value, option or destination given by the user.
            kv_engine::Error::InvalidArgument(m) => CliError::Usage(m),
            kv_engine::Error::Wal(e @ kv_wal::Error::LimitExceeded { .. }) => {
                CliError::Usage(e.to_string())
            }
            other => CliError::Data(other.to_string()),
        }
    }
}

impl From<kv_sstable::Error> for CliError {
    fn from(e: kv_sstable::Error) -> Self {
        CliError::Data(e.to_string())
    }
}

impl From<kv_wal::Error> for CliError {
    fn from(e: kv_wal::Error) -> Self {
        match e {
            kv_wal::Error::InvalidArgument(m) => CliError::Usage(m),
            other => CliError::Data(other.to_string()),
        }
    }
}

impl From<kv_iter::Error> for CliError {
    fn from(e: kv_iter::Error) -> Self {
        CliError::Data(e.to_string())
    }
}
