//! Per-thread zstd contexts and scratch buffers for the block codecs.
//!
//! Creating a zstd context allocates and initialises its tables: for the small blocks the store
//! seals, `ZSTD_createCCtx` cost more than the compression itself (8% of server CPU at 2M
//! samples/s when every block made its own). Each thread keeps one compressor per level (so a
//! level's parameters are set once) and one decompressor, and hands the output to a closure
//! from a reused buffer.

use std::cell::RefCell;

use crate::error::{Error, Result};

/// Scratch buffers above this are released after use, so one large block does not pin memory in
/// every worker thread.
const KEEP_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Deflate {
    /// One compressor per level used on this thread (the codecs use two or three levels).
    ctxs: Vec<(i32, zstd::bulk::Compressor<'static>)>,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Inflate {
    ctx: Option<zstd::bulk::Decompressor<'static>>,
    buf: Vec<u8>,
}

thread_local! {
    static DEFLATE: RefCell<Deflate> = RefCell::new(Deflate::default());
    static INFLATE: RefCell<Inflate> = RefCell::new(Inflate::default());
}

fn compress_error(e: impl std::fmt::Display) -> Error {
    Error::Compress(e.to_string())
}

/// Compresses `data` into one zstd frame at `level` and calls `f` with the frame.
pub(crate) fn compress<R>(data: &[u8], level: i32, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    DEFLATE.with(|cell| {
        let mut guard = cell
            .try_borrow_mut()
            .map_err(|_| Error::Compress("re-entrant compression".into()))?;
        let Deflate { ctxs, buf } = &mut *guard;
        let at = match ctxs.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                ctxs.push((level, zstd::bulk::Compressor::new(level).map_err(compress_error)?));
                ctxs.len() - 1
            }
        };
        let (_, ctx) = ctxs.get_mut(at).ok_or(Error::Compress("no zstd context".into()))?;
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(data.len()));
        ctx.compress_to_buffer(data, buf).map_err(compress_error)?;
        let res = f(buf);
        if buf.capacity() > KEEP_BYTES {
            *buf = Vec::new();
        }
        Ok(res)
    })
}

/// Decompresses one zstd frame that must hold exactly `len` bytes and calls `f` with them.
/// A damaged frame or a wrong length is [`Error::Corrupt`].
pub(crate) fn decompress<R>(frame: &[u8], len: usize, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    INFLATE.with(|cell| {
        let mut guard = cell
            .try_borrow_mut()
            .map_err(|_| Error::Compress("re-entrant decompression".into()))?;
        let Inflate { ctx, buf } = &mut *guard;
        if ctx.is_none() {
            *ctx = Some(zstd::bulk::Decompressor::new().map_err(compress_error)?);
        }
        let ctx = ctx.as_mut().ok_or(Error::Compress("no zstd context".into()))?;
        // The frame header states its content size: a damaged length is caught before it
        // allocates anything.
        match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(size)) if size != len as u64 => return Err(Error::Corrupt("zstd body length")),
            Err(_) => return Err(Error::Corrupt("zstd frame")),
            _ => {}
        }
        buf.clear();
        buf.reserve(len);
        let got = ctx
            .decompress_to_buffer(frame, buf)
            .map_err(|_| Error::Corrupt("zstd frame"))?;
        if got != len {
            return Err(Error::Corrupt("zstd body length"));
        }
        let res = f(buf);
        if buf.capacity() > KEEP_BYTES {
            *buf = Vec::new();
        }
        res
    })
}
