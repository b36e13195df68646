//! Runtime support the lowered code may call. MLIR lowers a `memref.copy` between
//! non-contiguous views to a call to `memrefCopy(elem_size, src, dst)` (from MLIR's C
//! runner utilities, which Debian does not ship as a library), so compc provides it: in
//! Rust for the JIT, and as C source linked into every shared library it writes.

/// `UnrankedMemRefType<char>`: the rank and a pointer to the ranked descriptor
/// `{allocated, aligned, offset, sizes[rank], strides[rank]}`.
#[repr(C)]
pub struct UnrankedMemRef {
    rank: i64,
    descriptor: *const i64,
}

/// # Safety
/// `src` and `dst` must be valid descriptors of views of the same shape whose elements
/// are `elem_size` bytes.
pub unsafe extern "C" fn memref_copy(
    elem_size: i64,
    src: *const UnrankedMemRef,
    dst: *const UnrankedMemRef,
) {
    let (src, dst) = unsafe { (&*src, &*dst) };
    let rank = src.rank as usize;
    let es = elem_size as usize;
    let field = |d: *const i64, i: usize| unsafe { *d.add(i) };
    let sbase = field(src.descriptor, 1) as *const u8;
    let dbase = field(dst.descriptor, 1) as *mut u8;
    let soff = field(src.descriptor, 2);
    let doff = field(dst.descriptor, 2);
    let sizes: Vec<i64> = (0..rank).map(|i| field(src.descriptor, 3 + i)).collect();
    let sstr: Vec<i64> = (0..rank)
        .map(|i| field(src.descriptor, 3 + rank + i))
        .collect();
    let dstr: Vec<i64> = (0..rank)
        .map(|i| field(dst.descriptor, 3 + rank + i))
        .collect();
    if sizes.contains(&0) {
        return;
    }
    // Rows whose last dim is unit-stride on both sides are copied whole.
    let rows = rank > 0 && sstr[rank - 1] == 1 && dstr[rank - 1] == 1;
    let (outer, chunk) = if rows {
        (rank - 1, es * sizes[rank - 1] as usize)
    } else {
        (rank, es)
    };
    let mut idx = vec![0i64; outer];
    loop {
        let so: i64 = soff + idx.iter().zip(&sstr).map(|(a, b)| a * b).sum::<i64>();
        let d_o: i64 = doff + idx.iter().zip(&dstr).map(|(a, b)| a * b).sum::<i64>();
        unsafe {
            std::ptr::copy_nonoverlapping(
                sbase.add(so as usize * es),
                dbase.add(d_o as usize * es),
                chunk,
            )
        };
        // Odometer over the outer index space, last dim fastest.
        let mut k = outer;
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < sizes[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// The same function in C, compiled into each shared library `--target cpu` writes.
pub const MEMREF_COPY_C: &str = r#"
#include <stdint.h>
#include <string.h>
typedef struct { int64_t rank; int64_t *desc; } unranked_t;
/* Copies a strided view; rows whose last dim is unit-stride on both sides go in one memcpy. */
void memrefCopy(int64_t es, unranked_t *src, unranked_t *dst) {
  int64_t rank = src->rank;
  char *sb = (char *)src->desc[1], *db = (char *)dst->desc[1];
  int64_t soff = src->desc[2], doff = dst->desc[2];
  int64_t *sizes = src->desc + 3, *ss = src->desc + 3 + rank, *ds = dst->desc + 3 + rank;
  int64_t idx[16] = {0};
  if (rank == 0) { memcpy(db + doff * es, sb + soff * es, (size_t)es); return; }
  if (rank > 16) return;
  for (int64_t i = 0; i < rank; i++) if (sizes[i] == 0) return;
  int64_t last = rank - 1;
  int rows = ss[last] == 1 && ds[last] == 1;
  int64_t outer = rows ? last : rank;
  for (;;) {
    int64_t so = soff, d = doff;
    for (int64_t i = 0; i < outer; i++) { so += idx[i] * ss[i]; d += idx[i] * ds[i]; }
    if (rows) memcpy(db + d * es, sb + so * es, (size_t)(es * sizes[last]));
    else memcpy(db + d * es, sb + so * es, (size_t)es);
    int64_t k = outer;
    for (;;) {
      if (k == 0) return;
      k--;
      if (++idx[k] < sizes[k]) break;
      idx[k] = 0;
    }
  }
}
"#;
