//! The library logs through the `log` crate; a C program may receive those records through a
//! callback. Off until `cp_set_log_callback` is called.

use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::io::Write;
use std::sync::{OnceLock, RwLock};

use crate::status::{Failure, cp_status, guard};

/// Severity of a log record, and the most verbose severity a callback receives.
pub type cp_log_level = u32;
/// No records.
pub const CP_LOG_OFF: cp_log_level = 0;
pub const CP_LOG_ERROR: cp_log_level = 1;
pub const CP_LOG_WARN: cp_log_level = 2;
pub const CP_LOG_INFO: cp_log_level = 3;
pub const CP_LOG_DEBUG: cp_log_level = 4;
pub const CP_LOG_TRACE: cp_log_level = 5;

/// Receives one log record. `target` is the Rust module that logged ("cellpose::segmenter"),
/// `message` the text; both are NUL-terminated and valid only during the call. Called on
/// whichever thread logged, possibly several at once: it must be thread-safe, must not
/// unwind (C++ exceptions) and should return quickly.
pub type cp_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: cp_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, cp_log_level, *const c_char, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the caller of cp_set_log_callback promises that the callback may be called with
// `user_data` from any thread (documented in the header).
unsafe impl Send for Sink {}
// SAFETY: as above; the sink itself is only copied.
unsafe impl Sync for Sink {}

struct CallbackLogger {
    sink: RwLock<Option<Sink>>,
}

static LOGGER: CallbackLogger = CallbackLogger {
    sink: RwLock::new(None),
};

thread_local! {
    /// Per-thread text buffers, reused so that logging allocates only while they grow.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn level_number(level: log::Level) -> cp_log_level {
    match level {
        log::Level::Error => CP_LOG_ERROR,
        log::Level::Warn => CP_LOG_WARN,
        log::Level::Info => CP_LOG_INFO,
        log::Level::Debug => CP_LOG_DEBUG,
        log::Level::Trace => CP_LOG_TRACE,
    }
}

/// Writes `text` NUL-terminated into `buf`, interior NULs replaced by spaces.
fn c_text(buf: &mut Vec<u8>, text: impl std::fmt::Display) {
    buf.clear();
    let _ = write!(buf, "{text}");
    buf.iter_mut().filter(|b| **b == 0).for_each(|b| *b = b' ');
    buf.push(0);
}

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Copy the sink out so that the callback runs without the lock held.
        let sink = match self.sink.read() {
            Ok(s) => *s,
            Err(_) => return,
        };
        let Some(sink) = sink else { return };
        BUFFERS.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return; // a record logged from inside the callback: dropped
            };
            let (target, message) = &mut *b;
            c_text(target, record.target());
            c_text(message, record.args());
            // SAFETY: both buffers are NUL-terminated and outlive the call; the callback and
            // user_data were registered together by the C program.
            unsafe {
                (sink.callback)(
                    sink.user_data,
                    level_number(record.level()),
                    target.as_ptr() as *const c_char,
                    message.as_ptr() as *const c_char,
                )
            };
        });
    }

    fn flush(&self) {}
}

fn level_filter(level: cp_log_level) -> Option<log::LevelFilter> {
    Some(match level {
        CP_LOG_OFF => log::LevelFilter::Off,
        CP_LOG_ERROR => log::LevelFilter::Error,
        CP_LOG_WARN => log::LevelFilter::Warn,
        CP_LOG_INFO => log::LevelFilter::Info,
        CP_LOG_DEBUG => log::LevelFilter::Debug,
        CP_LOG_TRACE => log::LevelFilter::Trace,
        _ => return None,
    })
}

/// Sends the library's log records up to `max_level` (a `cp_log_level`) to `callback`,
/// replacing any earlier callback. `callback` NULL (or `max_level` `CP_LOG_OFF`) turns
/// logging off. `user_data` is passed back to every call; the caller keeps ownership of it
/// and must keep it valid until logging is turned off or replaced.
///
/// Errors: `CP_ERR_UNKNOWN_ENUM` for a bad level; `CP_ERR_LOGGER` when another `log` logger
/// already owns the process (only possible when libcellpose is linked into a Rust program that
/// set one).
///
/// Any thread; the setting is process-wide. Records being delivered on other threads while it
/// changes may still reach the old callback.
#[unsafe(no_mangle)]
pub extern "C" fn cp_set_log_callback(
    callback: cp_log_callback,
    user_data: *mut c_void,
    max_level: cp_log_level,
) -> cp_status {
    guard("cp_set_log_callback", || {
        let filter = level_filter(max_level).ok_or_else(|| {
            Failure::new(
                cp_status::CP_ERR_UNKNOWN_ENUM,
                format!("max_level {max_level} is not a cp_log_level (0..=5)"),
            )
        })?;
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        if !*INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
            return Err(Failure::new(
                cp_status::CP_ERR_LOGGER,
                "another `log` logger is installed in this process",
            ));
        }
        let sink = callback.map(|callback| Sink {
            callback,
            user_data,
        });
        *LOGGER.sink.write().unwrap_or_else(|e| e.into_inner()) = sink;
        log::set_max_level(if sink.is_some() {
            filter
        } else {
            log::LevelFilter::Off
        });
        Ok(())
    })
}
