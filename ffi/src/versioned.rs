//! Reading and writing C structs that start with `size_t struct_size`, so that they can grow
//! without breaking programs compiled against an older header, and checked pointer arguments.

use std::mem::size_of;

use crate::status::{Failure, cp_status};

/// Reads a caller's `T` whose first field is `struct_size`. A caller compiled against an older
/// header passes a smaller struct: the fields it lacks keep their value in `defaults`. A larger
/// struct (newer header) is accepted; the fields this library does not know are ignored.
/// `min_size` is the size of the first published version of `T`.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` readable bytes, `struct_size` being the
/// first `usize` at `p`. `T` is a `repr(C)` struct of integers, floats and raw pointers
/// (every bit pattern valid) whose first field is a `usize`.
pub(crate) unsafe fn read<T: Copy>(
    p: *const T,
    name: &str,
    min_size: usize,
    defaults: T,
) -> Result<T, Failure> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL, and the caller guarantees at least the leading size_t is readable.
    let struct_size = unsafe { (p as *const usize).read_unaligned() };
    check_size(name, struct_size, min_size)?;
    let mut out = defaults;
    let n = struct_size.min(size_of::<T>());
    // SAFETY: `n` bytes are readable at `p` (n <= struct_size) and writable in `out`
    // (n <= size_of::<T>()); every bit pattern is a valid `T` field; an untyped copy.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n) };
    Ok(out)
}

/// Writes the first `min(struct_size, size_of::<T>())` bytes of `value` to `p`, keeping
/// `struct_size` as the caller set it.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` writable bytes, `struct_size` being the
/// first `usize` at `p`.
pub(crate) unsafe fn write<T: Copy>(
    p: *mut T,
    name: &str,
    min_size: usize,
    value: &T,
) -> Result<(), Failure> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL; the caller guarantees the leading size_t is readable.
    let struct_size = unsafe { (p as *const usize).read_unaligned() };
    check_size(name, struct_size, min_size)?;
    let n = struct_size.min(size_of::<T>());
    let skip = size_of::<usize>();
    // SAFETY: bytes skip..n lie inside both `value` and the caller's struct_size bytes; the
    // leading struct_size field is left alone.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T as *const u8).add(skip),
            (p as *mut u8).add(skip),
            n - skip,
        )
    };
    Ok(())
}

fn check_size(name: &str, struct_size: usize, min_size: usize) -> Result<(), Failure> {
    if struct_size < min_size {
        return Err(Failure::new(
            cp_status::CP_ERR_STRUCT_SIZE,
            format!(
                "{name}->struct_size is {struct_size}, expected at least {min_size} \
                 (set it to sizeof the struct)"
            ),
        ));
    }
    Ok(())
}

/// A shared reference from a pointer argument that must not be NULL.
///
/// # Safety
/// `p` is NULL or points to a valid `T` that outlives `'a` and is not mutated meanwhile.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(name))
}

/// An exclusive reference from a pointer argument that must not be NULL.
///
/// # Safety
/// `p` is NULL or points to a valid `T` that outlives `'a` and that nothing else accesses
/// meanwhile.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct V2 {
        struct_size: usize,
        a: u32,
        b: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct V1 {
        struct_size: usize,
        a: u32,
    }

    const V1_SIZE: usize = std::mem::offset_of!(V2, b);

    #[test]
    fn an_older_smaller_struct_keeps_the_defaults_of_its_missing_fields() {
        let old = V1 {
            struct_size: V1_SIZE,
            a: 5,
        };
        let defaults = V2 {
            struct_size: 0,
            a: 1,
            b: 2,
        };
        // SAFETY: `old` has V1_SIZE readable bytes.
        let v = unsafe { read(&old as *const V1 as *const V2, "s", V1_SIZE, defaults) }.unwrap();
        assert_eq!((v.a, v.b), (5, 2));
    }

    #[test]
    fn a_struct_size_below_the_first_version_is_rejected() {
        let old = V1 {
            struct_size: 4,
            a: 5,
        };
        let d = V2 {
            struct_size: 0,
            a: 1,
            b: 2,
        };
        // SAFETY: `old` is readable.
        let e = unsafe { read(&old as *const V1 as *const V2, "s", V1_SIZE, d) }.unwrap_err();
        assert_eq!(e.status, cp_status::CP_ERR_STRUCT_SIZE);
    }

    #[test]
    fn writing_an_older_struct_stops_at_its_size() {
        let mut buf = [V1 {
            struct_size: V1_SIZE,
            a: 0,
        }; 2];
        buf[1].struct_size = 77;
        let v = V2 {
            struct_size: 999,
            a: 9,
            b: 10,
        };
        // SAFETY: buf[0] has V1_SIZE writable bytes; V2 is written only up to them.
        unsafe { write(buf.as_mut_ptr() as *mut V2, "s", V1_SIZE, &v) }.unwrap();
        assert_eq!((buf[0].struct_size, buf[0].a), (V1_SIZE, 9));
        assert_eq!(buf[1].struct_size, 77, "bytes past struct_size untouched");
    }
}
