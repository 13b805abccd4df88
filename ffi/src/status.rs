//! `cp_status`, the thread-local last-error message, and the panic boundary.
//!
//! Every exported function that can fail runs its body through [`guard`]: a `Result` becomes a
//! status code plus a message, and a Rust panic becomes `CP_ERR_PANIC` instead of unwinding
//! into C.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

/// Result of every fallible function. `CP_OK` is 0; every other value is an error whose text
/// `cp_last_error_message()` returns on the same thread.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cp_status {
    /// Success.
    CP_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    CP_ERR_NULL_POINTER = 1,
    /// An argument has an impossible value (zero size, misaligned buffer, bad option).
    CP_ERR_INVALID_ARGUMENT = 2,
    /// An enum argument (pixel type, layout, label type, diameter mode, log level) has a value
    /// this library does not know.
    CP_ERR_UNKNOWN_ENUM = 3,
    /// A `struct_size` (or `object_size`) is smaller than the first version of that struct.
    CP_ERR_STRUCT_SIZE = 4,
    /// A caller buffer (frame data, labels, flows, cell probability, objects) is too small.
    CP_ERR_BUFFER_TOO_SMALL = 5,
    /// A size computation (width × height × channels × stride) overflows.
    CP_ERR_OVERFLOW = 6,
    /// A file could not be read.
    CP_ERR_IO = 7,
    /// The model is not a usable Cellpose network, or the network failed to run.
    CP_ERR_MODEL = 8,
    /// A segmentation option is out of range, or automatic diameter was asked of a model
    /// without a size model.
    CP_ERR_PARAMS = 9,
    /// The frame cannot be read as an image (too few channels, stride smaller than a row,
    /// side larger than 65536, NaN or infinite f32 samples).
    CP_ERR_IMAGE = 10,
    /// Results were asked of a session that has not segmented a frame yet.
    CP_ERR_NO_RESULT = 11,
    /// 16-bit labels were asked for a frame with more than 65535 objects.
    CP_ERR_LABEL_OVERFLOW = 12,
    /// Logging could not be set up (another `log` logger owns the process).
    CP_ERR_LOGGER = 13,
    /// A bug inside the library was caught at the ABI boundary. The session it happened in is
    /// poisoned (every later call on it returns this code); free it.
    CP_ERR_PANIC = 14,
}

use cp_status::*;

/// An error on its way to the C caller: the status and what the message will say.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: cp_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: cp_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn null(name: &str) -> Failure {
        Failure::new(CP_ERR_NULL_POINTER, format!("{name} is NULL"))
    }
}

impl From<cellpose::Error> for Failure {
    fn from(e: cellpose::Error) -> Failure {
        let status = match &e {
            cellpose::Error::Model(m) => model_status(m),
            cellpose::Error::Params(_) => CP_ERR_PARAMS,
            cellpose::Error::Image(i) => image_status(i),
        };
        Failure::new(status, e.to_string())
    }
}

impl From<cellpose::ModelError> for Failure {
    fn from(e: cellpose::ModelError) -> Failure {
        Failure::new(model_status(&e), e.to_string())
    }
}

impl From<cellpose::ImageError> for Failure {
    fn from(e: cellpose::ImageError) -> Failure {
        Failure::new(image_status(&e), e.to_string())
    }
}

fn model_status(e: &cellpose::ModelError) -> cp_status {
    match e {
        cellpose::ModelError::Io { .. } | cellpose::ModelError::ShippedNotFound { .. } => CP_ERR_IO,
        _ => CP_ERR_MODEL,
    }
}

fn image_status(e: &cellpose::ImageError) -> cp_status {
    use cellpose::ImageError as E;
    match e {
        E::BufferTooSmall { .. } => CP_ERR_BUFFER_TOO_SMALL,
        E::Overflow { .. } => CP_ERR_OVERFLOW,
        E::Empty { .. } | E::Depth { depth: 0, .. } | E::Misaligned { .. } => {
            CP_ERR_INVALID_ARGUMENT
        }
        _ => CP_ERR_IMAGE,
    }
}

thread_local! {
    /// Message of the last failed call on this thread; `None` after a successful one.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: String) {
    let c = CString::new(message.replace('\0', " ")).expect("NULs were replaced");
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

fn clear_last_error() {
    // Only drops an earlier message: a successful call allocates nothing here.
    LAST_ERROR.with(|e| {
        if let Ok(mut e) = e.try_borrow_mut()
            && e.is_some()
        {
            *e = None;
        }
    });
}

/// Text of the error of the last call made on this thread that failed, or "" when the last
/// call succeeded. Every function returning `cp_status` sets or clears it.
///
/// Never fails. The string belongs to the library and stays valid until the next call into
/// the library on the same thread; copy it to keep it. Each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn cp_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| match &*e.borrow() {
        Some(c) => c.as_ptr(),
        None => c"".as_ptr(),
    })
}

impl cp_status {
    /// Every status in code order: `ALL[code]` is the status of `code` (checked when this
    /// compiles). A new status goes at the end of the enum and here.
    const ALL: [cp_status; 15] = [
        CP_OK,
        CP_ERR_NULL_POINTER,
        CP_ERR_INVALID_ARGUMENT,
        CP_ERR_UNKNOWN_ENUM,
        CP_ERR_STRUCT_SIZE,
        CP_ERR_BUFFER_TOO_SMALL,
        CP_ERR_OVERFLOW,
        CP_ERR_IO,
        CP_ERR_MODEL,
        CP_ERR_PARAMS,
        CP_ERR_IMAGE,
        CP_ERR_NO_RESULT,
        CP_ERR_LABEL_OVERFLOW,
        CP_ERR_LOGGER,
        CP_ERR_PANIC,
    ];
}

const _: () = {
    let mut code = 0;
    while code < cp_status::ALL.len() {
        assert!(
            cp_status::ALL[code] as usize == code,
            "cp_status::ALL is out of code order"
        );
        code += 1;
    }
};

/// Static name of a status code ("CP_OK", "CP_ERR_NULL_POINTER", ...), or "CP_ERR_UNKNOWN"
/// for a value that is not a `cp_status`.
///
/// Never fails; the string is static. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cp_status_name(status: u32) -> *const c_char {
    // The names are the enum's own identifiers (its `Debug`), made into C strings once.
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        cp_status::ALL
            .iter()
            .map(|s| CString::new(format!("{s:?}")).expect("identifiers hold no NUL"))
            .collect()
    });
    names
        .get(status as usize)
        .map_or(c"CP_ERR_UNKNOWN".as_ptr(), |name| name.as_ptr())
}

/// Sets the caller's out-pointer to NULL before anything else can fail, so that a failed
/// call always leaves NULL there; `CP_ERR_NULL_POINTER` ("out is NULL") when `out` itself is
/// NULL. The preamble of every function that hands out an object.
///
/// # Safety
/// `out` is NULL or writable.
pub(crate) unsafe fn clear_out<T>(out: *mut *mut T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null("out"));
    }
    // SAFETY: non-NULL, and writable by this function's contract.
    unsafe { *out = std::ptr::null_mut() };
    Ok(())
}

/// Runs the body of exported function `function`: its result becomes a status and the
/// thread's last-error message; a panic becomes `CP_ERR_PANIC` and never crosses the ABI.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> cp_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            CP_OK
        }
        Ok(Err(f)) => {
            set_last_error(format!("{function}: {}", f.message));
            f.status
        }
        Err(payload) => {
            let what = cellpose::error::panic_message(&*payload);
            set_last_error(format!(
                "{function}: internal error (a bug in libcellpose, please report it): {what}"
            ));
            CP_ERR_PANIC
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the pointer is a NUL-terminated string owned by this thread's slot.
        unsafe { CStr::from_ptr(cp_last_error_message()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_panic_becomes_cp_err_panic_with_a_message() {
        let s = guard("cp_test", || panic!("boom {}", 7));
        assert_eq!(s, CP_ERR_PANIC);
        assert!(
            last().contains("cp_test") && last().contains("boom 7"),
            "{}",
            last()
        );
    }

    #[test]
    fn success_clears_the_last_error_and_failure_sets_it() {
        let s = guard("cp_test", || Err(Failure::null("frame")));
        assert_eq!(s, CP_ERR_NULL_POINTER);
        assert_eq!(last(), "cp_test: frame is NULL");
        assert_eq!(guard("cp_test", || Ok(())), CP_OK);
        assert_eq!(last(), "");
    }

    #[test]
    fn every_status_of_the_header_has_its_own_name() {
        // The generated header lists the enum (`  CP_ERR_IO = 7,`): every entry's name must
        // come back for its value, so a status added to the enum but not to `ALL` fails here.
        let header = include_str!("../../include/cellpose.h");
        let body = header
            .split("enum cp_status\n")
            .nth(1)
            .expect("cp_status in the header");
        let body = body.split(" {").nth(1).unwrap().split('}').next().unwrap();
        let mut seen = 0;
        for line in body.lines().map(str::trim).filter(|l| l.starts_with("CP_")) {
            let (name, value) = line.trim_end_matches(',').split_once(" = ").unwrap();
            let value: u32 = value.parse().unwrap();
            // SAFETY: cp_status_name returns a static NUL-terminated string.
            let got = unsafe { CStr::from_ptr(cp_status_name(value)) };
            assert_eq!(got.to_str().unwrap(), name, "code {value}");
            seen += 1;
        }
        assert_eq!(seen, cp_status::ALL.len());
        // SAFETY: as above.
        let n = unsafe { CStr::from_ptr(cp_status_name(99)) };
        assert_eq!(n.to_str().unwrap(), "CP_ERR_UNKNOWN");
    }

    #[test]
    fn messages_with_nul_bytes_are_kept_readable() {
        guard("cp_test", || Err(Failure::new(CP_ERR_IO, "a\0b")));
        assert_eq!(last(), "cp_test: a b");
    }
}
