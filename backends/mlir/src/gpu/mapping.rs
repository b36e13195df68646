//! Which loop of each parallel loop nest runs on GPU threads and which on blocks.
//!
//! After `convert-linalg-to-parallel-loops` every linalg op is one `scf.parallel` over its
//! parallel dims (reductions are `scf.for` loops inside). `gpu-map-parallel-loops` would
//! map a single such loop to blocks only, one thread each; instead the innermost dim
//! (contiguous in memory, so a warp's loads coalesce) goes to `thread_x` when its extent
//! is static and fits a block, a small innermost dim takes the next one as `thread_y`,
//! and the remaining dims, innermost first, go to `block_x`, `block_y`, `block_z` (the
//! rest stay sequential loops inside the kernel). `convert-parallel-loops-to-gpu` then
//! reads the `mapping` attribute and computes the launch sizes from the loop bounds.

/// Most threads per block.
pub const MAX_THREADS: i64 = 1024;
/// Grid dims y and z hold at most this many blocks.
const MAX_GRID_YZ: i64 = 65535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    BlockX,
    BlockY,
    BlockZ,
    ThreadX,
    ThreadY,
    Sequential,
}

impl Processor {
    fn name(self) -> &'static str {
        match self {
            Processor::BlockX => "block_x",
            Processor::BlockY => "block_y",
            Processor::BlockZ => "block_z",
            Processor::ThreadX => "thread_x",
            Processor::ThreadY => "thread_y",
            Processor::Sequential => "sequential",
        }
    }
}

/// The processor of each dim of a loop with these extents (`None`: dynamic).
pub fn assign(extents: &[Option<i64>]) -> Vec<Processor> {
    let n = extents.len();
    let mut out = vec![Processor::Sequential; n];
    if n == 0 {
        return out;
    }
    let mut outer_end = n;
    if let Some(e) = extents[n - 1].filter(|&e| e <= MAX_THREADS) {
        out[n - 1] = Processor::ThreadX;
        outer_end = n - 1;
        if e <= 32 && n >= 2 {
            if let Some(e2) = extents[n - 2].filter(|&e2| e * e2 <= MAX_THREADS) {
                let _ = e2;
                out[n - 2] = Processor::ThreadY;
                outer_end = n - 2;
            }
        }
    }
    let mut blocks = [Processor::BlockX, Processor::BlockY, Processor::BlockZ].into_iter();
    for d in (0..outer_end).rev() {
        let fits_yz = extents[d].is_none_or(|e| e <= MAX_GRID_YZ);
        let next = blocks.clone().next();
        match next {
            Some(Processor::BlockX) => {
                out[d] = blocks.next().unwrap_or(Processor::Sequential);
            }
            Some(p) if fits_yz => {
                out[d] = p;
                blocks.next();
            }
            _ => out[d] = Processor::Sequential,
        }
    }
    out
}

/// The `mapping` attribute text for these processors.
pub fn attribute(procs: &[Processor]) -> String {
    let items: Vec<String> = procs
        .iter()
        .map(|p| {
            format!(
                "#gpu.loop_dim_map<processor = {}, map = (d0) -> (d0), bound = (d0) -> (d0)>",
                p.name()
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::Processor::*;
    use super::*;

    #[test]
    fn innermost_static_dim_goes_to_threads() {
        assert_eq!(
            assign(&[None, None, Some(256)]),
            vec![BlockY, BlockX, ThreadX]
        );
    }

    #[test]
    fn small_innermost_dims_pair_up_on_threads() {
        assert_eq!(
            assign(&[None, Some(16), Some(8), Some(8)]),
            vec![BlockY, BlockX, ThreadY, ThreadX]
        );
    }

    #[test]
    fn dynamic_or_large_innermost_dims_go_to_blocks() {
        assert_eq!(assign(&[None, Some(4096)]), vec![BlockY, BlockX]);
        assert_eq!(
            assign(&[Some(2), Some(3), Some(4), Some(5), None]),
            vec![Sequential, Sequential, BlockZ, BlockY, BlockX]
        );
    }

    #[test]
    fn attribute_names_each_dim() {
        let a = attribute(&[BlockX, ThreadX]);
        assert!(
            a.starts_with("[#gpu.loop_dim_map<processor = block_x"),
            "{a}"
        );
        assert!(a.contains("processor = thread_x"), "{a}");
    }
}
