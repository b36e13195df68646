//! What the manifest says about each kernel, read from the PTX the backend wrote: its
//! name, the number of launch arguments, the block size where the PTX fixes it, and the
//! static shared memory it declares.

use compc_runtime::native::manifest::KernelSpec;

/// The kernels of one PTX module (`module` is the `gpu.module` it came from).
pub fn kernels(module: &str, ptx: &str) -> Vec<KernelSpec> {
    let mut out: Vec<KernelSpec> = Vec::new();
    let mut in_params = false;
    for line in ptx.lines() {
        let t = line.trim();
        if let Some(rest) = t
            .strip_prefix(".visible .entry ")
            .or_else(|| t.strip_prefix(".entry "))
        {
            let name = rest.split('(').next().unwrap_or_default().trim();
            out.push(KernelSpec {
                name: name.to_string(),
                module: module.to_string(),
                params: 0,
                block: None,
                shared_bytes: 0,
            });
            in_params = rest.ends_with('(');
            continue;
        }
        let Some(k) = out.last_mut() else { continue };
        if in_params {
            if t.starts_with(".param ") {
                k.params += 1;
            } else if t.starts_with(')') {
                in_params = false;
            }
        } else if let Some(dims) = t
            .strip_prefix(".maxntid ")
            .or_else(|| t.strip_prefix(".reqntid "))
        {
            let v: Vec<u32> = dims
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect();
            k.block = Some([
                v.first().copied().unwrap_or(1),
                v.get(1).copied().unwrap_or(1),
                v.get(2).copied().unwrap_or(1),
            ]);
        } else if t.starts_with(".shared ") {
            // `.shared .align 4 .b8 name[4160];`
            let size = t
                .rsplit_once('[')
                .and_then(|(_, s)| s.split(']').next())
                .and_then(|s| s.parse::<u64>().ok());
            k.shared_bytes += size.unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_params_block_and_shared_memory() {
        let ptx = "\
.version 8.0
.target sm_90
.address_size 64

.visible .entry a_kernel(
\t.param .u64 a_kernel_param_0,
\t.param .u64 .ptr .align 1 a_kernel_param_1
)
.maxntid 128, 1, 1
{
\t.shared .align 4 .b8 __wg_a_kernel_0[4160];
\t.shared .align 4 .b8 __wg_a_kernel_1[4096];
\tret;
}
.visible .entry b_kernel(
\t.param .u64 b_kernel_param_0
)
{
\tret;
}
";
        let k = kernels("m", ptx);
        assert_eq!(
            k,
            vec![
                KernelSpec {
                    name: "a_kernel".into(),
                    module: "m".into(),
                    params: 2,
                    block: Some([128, 1, 1]),
                    shared_bytes: 8256,
                },
                KernelSpec {
                    name: "b_kernel".into(),
                    module: "m".into(),
                    params: 1,
                    block: None,
                    shared_bytes: 0,
                },
            ]
        );
    }
}
