//! Errors from opening a backend (bad configuration, missing host resources).

use std::io;

/// Why a network backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A bridge needs a host interface name and none was given.
    #[error("{kind} needs the name of a host interface to bridge onto")]
    MissingInterface {
        /// The NIC type that needs it.
        kind: &'static str,
    },
    /// The host interface name is empty, too long (15 bytes max) or has a NUL/`/`.
    #[error("invalid host interface name {0:?}")]
    BadInterfaceName(String),
    /// The host interface named for a bridge does not exist.
    #[error("host interface {0:?} does not exist")]
    NoSuchInterface(String),
    /// A redirection's port range runs past 65535 or has a zero port/count.
    #[error("redirection {0} is invalid: {1}")]
    BadRedirection(String, &'static str),
    /// libslirp refused a port redirection (typically: host port already in use).
    #[error("cannot redirect {0} (host port busy or not bindable)")]
    RedirectFailed(String),
    /// libslirp could not be initialised.
    #[error("libslirp failed to start: {0}")]
    SlirpInit(String),
    /// A system call failed while opening the backend.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl NetError {
    /// Wraps the current OS error with a description of the failed step.
    pub(crate) fn last_os(what: impl Into<String>) -> Self {
        NetError::Io {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// Wraps an I/O error with a description of the failed step.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        NetError::Io {
            what: what.into(),
            source,
        }
    }
}
