//! libslirp, loaded when the first slirp NIC is made instead of at process
//! start.
//!
//! Why: linked the usual way, libslirp brings glib, pcre2 and libm into every
//! daemon, slirp or not: about 1.1 MiB of the monitor's own resident memory
//! at the guest's init (issue 17 measured 6.0 MiB in all, 5.6 of it mapped
//! files). The daemon calls none of libslirp's functions directly, so the
//! linker (`--as-needed`) leaves it out, and [`api`] opens `libslirp.so.0`
//! the first time it is asked. The types and constants still come from
//! `libslirp-sys`.

use std::os::raw::{c_char, c_int, c_void};
use std::sync::OnceLock;

use libslirp_sys as ffi;

use crate::NetError;

/// The soname Debian's `libslirp0` package installs.
pub const SONAME: &str = "libslirp.so.0";

/// The libslirp functions the backend calls, resolved from [`SONAME`].
pub(super) struct Api {
    pub new: unsafe extern "C" fn(
        *const ffi::SlirpConfig,
        *const ffi::SlirpCb,
        *mut c_void,
    ) -> *mut ffi::Slirp,
    pub cleanup: unsafe extern "C" fn(*mut ffi::Slirp),
    pub pollfds_fill:
        unsafe extern "C" fn(*mut ffi::Slirp, *mut u32, ffi::SlirpAddPollCb, *mut c_void),
    pub pollfds_poll:
        unsafe extern "C" fn(*mut ffi::Slirp, c_int, ffi::SlirpGetREventsCb, *mut c_void),
    pub input: unsafe extern "C" fn(*mut ffi::Slirp, *const u8, c_int),
    pub add_hostfwd: unsafe extern "C" fn(
        *mut ffi::Slirp,
        c_int,
        ffi::in_addr,
        c_int,
        ffi::in_addr,
        c_int,
    ) -> c_int,
    pub version_string: unsafe extern "C" fn() -> *const c_char,
    /// Kept open for the life of the process: the pointers above point into it.
    _library: libloading::Library,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// libslirp's functions, opening the library on first use; the error names
/// the library and what the loader said.
pub(super) fn api() -> Result<&'static Api, NetError> {
    API.get_or_init(|| {
        let api = open()?;
        // SAFETY: FFI boundary; libslirp returns a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr((api.version_string)()) };
        tracing::debug!("opened {SONAME}: libslirp {}", version.to_string_lossy());
        Ok(api)
    })
    .as_ref()
    .map_err(|e| NetError::SlirpInit(e.clone()))
}

fn open() -> Result<Api, String> {
    let cannot = |e: libloading::Error| {
        format!("cannot load {SONAME} ({e}); slirp needs libslirp 4.2 or later (Debian: libslirp0)")
    };
    // SAFETY: FFI boundary. Opening libslirp runs only its (and glib's)
    // initialisers, which have no preconditions.
    let library = unsafe { libloading::Library::new(SONAME) }.map_err(cannot)?;
    // SAFETY: FFI boundary. Each symbol is looked up by its C name and given
    // the signature libslirp's header (as transcribed by libslirp-sys) declares
    // for it; the pointers stay valid while `library` is open, which is for
    // the life of the process (it lives in a static).
    unsafe {
        Ok(Api {
            new: *library.get(b"slirp_new\0").map_err(cannot)?,
            cleanup: *library.get(b"slirp_cleanup\0").map_err(cannot)?,
            pollfds_fill: *library.get(b"slirp_pollfds_fill\0").map_err(cannot)?,
            pollfds_poll: *library.get(b"slirp_pollfds_poll\0").map_err(cannot)?,
            input: *library.get(b"slirp_input\0").map_err(cannot)?,
            add_hostfwd: *library.get(b"slirp_add_hostfwd\0").map_err(cannot)?,
            version_string: *library.get(b"slirp_version_string\0").map_err(cannot)?,
            _library: library,
        })
    }
}
