//! Splits a parallel loop's wide innermost dim so that it can run on threads.
//!
//! [`super::mapping`] puts the innermost dim of each `scf.parallel` on `thread_x` when its
//! extent fits a block (≤ 1024); a wider one (the 4096 features of an element-wise op on
//! `[batch, 4096]`) would go to blocks of one thread each. This rewrite, on the printed
//! module after `convert-linalg-to-parallel-loops`, splits such a dim `j ∈ [0, D)` into
//! `(jo, ji) ∈ [0, D/T) × [0, T)` with `j = jo·T + ji`, for the largest T in
//! [`THREADS`] that divides D: `ji` then goes to threads and `jo` to blocks.
//! A dim whose bounds or step are not constants (0, D, 1), or that no T divides, is left
//! as it was.

/// Thread counts tried for the inner part, best first.
const THREADS: [i64; 6] = [256, 512, 1024, 128, 64, 32];

/// The printed module with every wide innermost parallel dim split.
pub fn split(text: &str) -> String {
    let mut consts: std::collections::HashMap<String, i64> = Default::default();
    let mut out = String::with_capacity(text.len() + 1024);
    let mut fresh = 0usize;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some((name, value)) = index_constant(t) {
            consts.insert(name, value);
        }
        match split_header(line, &consts, fresh) {
            Some(rewritten) => {
                out.push_str(&rewritten);
                fresh += 1;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `%c4096 = arith.constant 4096 : index` → (`%c4096`, 4096).
fn index_constant(t: &str) -> Option<(String, i64)> {
    let (name, rhs) = t.split_once(" = arith.constant ")?;
    let value = rhs.strip_suffix(" : index")?.trim().parse().ok()?;
    Some((name.to_string(), value))
}

/// The header `scf.parallel (ivs) = (lbs) to (ubs) step (steps) {` with its innermost dim
/// split, followed by the two constants it needs (before it) and the recombined index
/// (first in the body); `None` when the line is not such a header or the dim stays.
fn split_header(
    line: &str,
    consts: &std::collections::HashMap<String, i64>,
    fresh: usize,
) -> Option<String> {
    let t = line.trim_start();
    let indent = &line[..line.len() - t.len()];
    let rest = t.strip_prefix("scf.parallel (")?;
    let (ivs, rest) = rest.split_once(") = (")?;
    let (lbs, rest) = rest.split_once(") to (")?;
    let (ubs, rest) = rest.split_once(") step (")?;
    let (steps, tail) = rest.split_once(')')?;
    if tail.trim() != "{" {
        return None;
    }
    let list = |s: &str| -> Vec<String> { s.split(", ").map(|x| x.trim().to_string()).collect() };
    let (ivs, lbs, ubs, steps) = (list(ivs), list(lbs), list(ubs), list(steps));
    let n = ivs.len();
    if n == 0 || lbs.len() != n || ubs.len() != n || steps.len() != n {
        return None;
    }
    let value = |v: &str| consts.get(v).copied();
    let d = value(&ubs[n - 1])?;
    if d <= super::mapping::MAX_THREADS || value(&lbs[n - 1])? != 0 || value(&steps[n - 1])? != 1 {
        return None;
    }
    let threads = THREADS.into_iter().find(|&t| d % t == 0)?;
    let (outer, inner) = (format!("%wide{fresh}_o"), format!("%wide{fresh}_i"));
    let (c_outer, c_inner) = (format!("%wide{fresh}_no"), format!("%wide{fresh}_ni"));
    let join = |v: &[String]| v.join(", ");
    let mut new_ivs = ivs[..n - 1].to_vec();
    new_ivs.extend([outer.clone(), inner.clone()]);
    let mut new_lbs = lbs.clone();
    new_lbs.push(lbs[n - 1].clone());
    let mut new_ubs = ubs[..n - 1].to_vec();
    new_ubs.extend([c_outer.clone(), c_inner.clone()]);
    let mut new_steps = steps.clone();
    new_steps.push(steps[n - 1].clone());
    let j = &ivs[n - 1];
    Some(format!(
        "{indent}{c_outer} = arith.constant {} : index\n\
         {indent}{c_inner} = arith.constant {threads} : index\n\
         {indent}scf.parallel ({}) = ({}) to ({}) step ({}) {{\n\
         {indent}  %wide{fresh}_base = arith.muli {outer}, {c_inner} : index\n\
         {indent}  {j} = arith.addi %wide{fresh}_base, {inner} : index\n",
        d / threads,
        join(&new_ivs),
        join(&new_lbs),
        join(&new_ubs),
        join(&new_steps),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOP: &str = "    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c4096 = arith.constant 4096 : index
    %c1000 = arith.constant 1000 : index
    scf.parallel (%arg1, %arg2) = (%c0, %c0) to (%dim, %c4096) step (%c1, %c1) {
      %0 = memref.load %a[%arg1, %arg2] : memref<?x4096xf32>
      scf.reduce
    }
";

    #[test]
    fn a_wide_innermost_dim_becomes_blocks_of_threads() {
        let out = split(LOOP);
        assert!(
            out.contains("%wide0_no = arith.constant 16 : index"),
            "{out}"
        );
        assert!(
            out.contains("%wide0_ni = arith.constant 256 : index"),
            "{out}"
        );
        assert!(
            out.contains(
                "scf.parallel (%arg1, %wide0_o, %wide0_i) = (%c0, %c0, %c0) to (%dim, %wide0_no, %wide0_ni) step (%c1, %c1, %c1) {"
            ),
            "{out}"
        );
        assert!(
            out.contains("      %arg2 = arith.addi %wide0_base, %wide0_i : index"),
            "{out}"
        );
        assert!(out.contains("memref.load %a[%arg1, %arg2]"), "{out}");
    }

    #[test]
    fn narrow_dynamic_or_indivisible_dims_stay() {
        let narrow = LOOP.replace("to (%dim, %c4096)", "to (%dim, %c1000)");
        assert_eq!(split(&narrow), narrow);
        let dynamic = LOOP.replace("to (%dim, %c4096)", "to (%c4096, %dim)");
        assert_eq!(split(&dynamic), dynamic);
        let odd = LOOP
            .replace(
                "%c4096 = arith.constant 4096",
                "%c4097 = arith.constant 4097",
            )
            .replace("to (%dim, %c4096)", "to (%dim, %c4097)");
        assert_eq!(split(&odd), odd);
    }
}
