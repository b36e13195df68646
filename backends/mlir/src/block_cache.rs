//! The heap the compiled CPU code allocates its intermediate buffers from
//! (`finalize-memref-to-llvm{use-generic-functions}` makes every `memref.alloc` call
//! `_mlir_memref_to_llvm_alloc`/`_aligned_alloc` and every dealloc
//! `_mlir_memref_to_llvm_free`): freed blocks are kept in a small per-thread cache and
//! handed out again to a later allocation of about the same size.
//!
//! Why: a run allocates and frees the same buffers every time. With plain `malloc`, glibc
//! serves buffers above its mmap threshold (128 KiB at first, e.g. one 8-image CNN
//! activation) with fresh `mmap`s, so each run page-faults them in again; measured, that
//! made the 8-image CNN take 2.5 ms instead of 1.5 ms in about half the processes.
//!
//! Each block has a 32-byte header before the pointer handed out: the usable size, the
//! start and size of the underlying allocation, and its alignment. A cached block is
//! reused for a request of at most its size and at least half of it, whose alignment
//! its address satisfies; the cache holds at most [`SLOTS`] blocks and [`MAX_BYTES`]
//! bytes per thread (the oldest goes first).
//!
//! The JIT calls the Rust functions here; each shared library carries [`BLOCK_CACHE_C`],
//! the same in C (whose cache, unlike the Rust one, is not freed when a thread exits).

use std::alloc::Layout;
use std::cell::RefCell;

/// Blocks kept per thread.
const SLOTS: usize = 32;
/// Bytes kept per thread.
const MAX_BYTES: usize = 256 << 20;
/// Header bytes before each block.
const HEADER: usize = 32;

struct Cache {
    blocks: Vec<*mut u8>,
    bytes: usize,
}

impl Drop for Cache {
    fn drop(&mut self) {
        for &p in &self.blocks {
            // SAFETY: every cached pointer came from `fresh` and is no longer in use.
            unsafe { release(p) };
        }
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { blocks: Vec::new(), bytes: 0 }) };
}

/// The header words of block `p`: usable size, allocation start, allocation size,
/// alignment.
unsafe fn header(p: *mut u8) -> [usize; 4] {
    unsafe { *(p.sub(HEADER) as *const [usize; 4]) }
}

unsafe fn fresh(size: usize, align: usize) -> *mut u8 {
    let align = align.max(HEADER).next_power_of_two();
    let total = align + size.max(1);
    let Ok(layout) = Layout::from_size_align(total, align) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `total` is non-zero.
    let raw = unsafe { std::alloc::alloc(layout) };
    if raw.is_null() {
        return raw;
    }
    // SAFETY: `align ≥ HEADER`, so the header fits between `raw` and `p`.
    unsafe {
        let p = raw.add(align);
        *(p.sub(HEADER) as *mut [usize; 4]) = [size, raw as usize, total, align];
        p
    }
}

unsafe fn release(p: *mut u8) {
    let [_, raw, total, align] = unsafe { header(p) };
    // SAFETY: the layout is the one `fresh` allocated with.
    unsafe {
        std::alloc::dealloc(
            raw as *mut u8,
            Layout::from_size_align_unchecked(total, align),
        )
    };
}

/// `_mlir_memref_to_llvm_aligned_alloc`.
///
/// # Safety
/// The block must be freed with [`free`] only.
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    let hit = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        let i = c.blocks.iter().position(|&p| {
            // SAFETY: cached pointers are live blocks from `fresh`.
            let cap = unsafe { header(p)[0] };
            cap >= size && cap / 2 <= size && (p as usize).is_multiple_of(align.max(1))
        })?;
        let p = c.blocks.remove(i);
        // SAFETY: as above.
        c.bytes -= unsafe { header(p)[0] };
        Some(p)
    });
    match hit {
        Ok(Some(p)) => p,
        _ => unsafe { fresh(size, align) },
    }
}

/// `_mlir_memref_to_llvm_alloc`.
///
/// # Safety
/// As [`aligned_alloc`].
pub unsafe extern "C" fn alloc(size: usize) -> *mut u8 {
    unsafe { aligned_alloc(16, size) }
}

/// `_mlir_memref_to_llvm_free`.
///
/// # Safety
/// `p` is null or a block from [`alloc`]/[`aligned_alloc`] not freed yet.
pub unsafe extern "C" fn free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let evicted = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        // SAFETY: `p` is a live block from `fresh`.
        c.bytes += unsafe { header(p)[0] };
        c.blocks.push(p);
        let mut out = Vec::new();
        while c.blocks.len() > SLOTS || c.bytes > MAX_BYTES {
            let q = c.blocks.remove(0);
            // SAFETY: as above.
            c.bytes -= unsafe { header(q)[0] };
            out.push(q);
        }
        out
    });
    match evicted {
        Ok(out) => out.into_iter().for_each(|q| unsafe { release(q) }),
        // The thread is exiting and its cache is gone: free directly.
        Err(_) => unsafe { release(p) },
    }
}

/// The symbols the lowered code calls, with the functions the JIT binds them to.
pub fn symbols() -> [(&'static str, *mut ()); 3] {
    [
        ("_mlir_memref_to_llvm_alloc", alloc as *const () as *mut ()),
        (
            "_mlir_memref_to_llvm_aligned_alloc",
            aligned_alloc as *const () as *mut (),
        ),
        ("_mlir_memref_to_llvm_free", free as *const () as *mut ()),
    ]
}

/// The same cache in C for the shared libraries (hidden symbols: each library has its
/// own, and a GPU library's allocation functions in the same process are not affected).
pub const BLOCK_CACHE_C: &str = r#"
#include <stdint.h>
#include <stdlib.h>
#define SLOTS 32
#define MAX_BYTES ((size_t)256 << 20)
#define HEADER 32
#define HIDDEN __attribute__((visibility("hidden")))
typedef struct { size_t size, raw, total, align; } block_header;
static _Thread_local void *cache[SLOTS + 1];
static _Thread_local size_t cached, cached_bytes;
static block_header *hdr(void *p) { return (block_header *)((char *)p - HEADER); }
static void *fresh(size_t size, size_t align) {
  size_t a = HEADER;
  while (a < align) a <<= 1;
  size_t total = (a + size + a - 1) / a * a; /* aligned_alloc wants a multiple of a */
  char *raw = aligned_alloc(a, total);
  if (!raw) return NULL;
  char *p = raw + a;
  block_header *h = hdr(p);
  h->size = size; h->raw = (uintptr_t)raw; h->total = total; h->align = a;
  return p;
}
HIDDEN void *_mlir_memref_to_llvm_aligned_alloc(size_t align, size_t size) {
  for (size_t i = 0; i < cached; i++) {
    void *p = cache[i];
    size_t cap = hdr(p)->size;
    if (cap >= size && cap / 2 <= size && (uintptr_t)p % (align ? align : 1) == 0) {
      cache[i] = cache[--cached];
      cached_bytes -= cap;
      return p;
    }
  }
  return fresh(size, align);
}
HIDDEN void *_mlir_memref_to_llvm_alloc(size_t size) {
  return _mlir_memref_to_llvm_aligned_alloc(16, size);
}
HIDDEN void _mlir_memref_to_llvm_free(void *p) {
  if (!p) return;
  cache[cached++] = p;
  cached_bytes += hdr(p)->size;
  while (cached > SLOTS || cached_bytes > MAX_BYTES) {
    void *q = cache[0];
    cached_bytes -= hdr(q)->size;
    for (size_t i = 1; i < cached; i++) cache[i - 1] = cache[i];
    cached--;
    free((void *)hdr(q)->raw);
  }
}
"#;
