//! Small node builders for the routing rewrite: every new value is typed `Unranked` and
//! the pass re-infers shapes once at the end.

use crate::pass::PassError;
use compc_ir::op::{
    Axes, Axis0, BinaryOp, Cast, Reduce, ReduceOp, Scatter, ShapeOf, TopK, UnaryOp,
};
use compc_ir::{DType, Graph, Op, Shape, TensorType, ValueRef};
use compc_runtime::Tensor;

pub struct Builder<'g> {
    pub g: &'g mut Graph,
    pub prefix: String,
    count: usize,
}

impl<'g> Builder<'g> {
    pub fn new(g: &'g mut Graph, prefix: impl Into<String>) -> Self {
        Builder {
            g,
            prefix: prefix.into(),
            count: 0,
        }
    }

    fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}/{what}_{}", self.prefix, self.count)
    }

    pub fn node(
        &mut self,
        op: Op,
        inputs: &[ValueRef],
        what: &str,
        outputs: usize,
    ) -> Vec<ValueRef> {
        let ty = TensorType {
            dtype: DType::F32,
            shape: Shape::Unranked,
        };
        let name = self.name(what);
        let id = self.g.add_node(
            op,
            inputs.iter().map(|v| Some(*v)).collect(),
            vec![ty; outputs],
            name,
        );
        (0..outputs).map(|s| ValueRef::new(id, s as u32)).collect()
    }

    pub fn one(&mut self, op: Op, inputs: &[ValueRef], what: &str) -> ValueRef {
        self.node(op, inputs, what, 1)[0]
    }

    pub fn constant(&mut self, t: Tensor, what: &str) -> Result<ValueRef, PassError> {
        let name = self.name(what);
        let w = t.to_weight(&name)?;
        Ok(ValueRef::new(self.g.add_const(w), 0))
    }

    pub fn i64s(&mut self, v: &[i64], what: &str) -> Result<ValueRef, PassError> {
        self.constant(Tensor::from_i64(vec![v.len()], v.to_vec()), what)
    }

    pub fn bin(&mut self, op: BinaryOp, a: ValueRef, b: ValueRef) -> ValueRef {
        self.one(Op::Binary(op), &[a, b], op.name())
    }

    pub fn unary(&mut self, op: UnaryOp, a: ValueRef) -> ValueRef {
        self.one(Op::Unary(op), &[a], op.name())
    }

    pub fn cast(&mut self, a: ValueRef, to: DType) -> ValueRef {
        self.one(
            Op::Cast(Cast {
                to,
                ..Default::default()
            }),
            &[a],
            "cast",
        )
    }

    pub fn shape(&mut self, a: ValueRef) -> ValueRef {
        self.one(Op::Shape(ShapeOf::default()), &[a], "shape")
    }

    /// `Shape(a)[axis..axis+1]` as a 1-element int64 tensor.
    pub fn dim(&mut self, a: ValueRef, axis: i64) -> ValueRef {
        self.one(
            Op::Shape(ShapeOf {
                start: axis,
                end: Some(axis + 1),
            }),
            &[a],
            "dim",
        )
    }

    pub fn unsqueeze(&mut self, a: ValueRef, axes: Vec<i64>) -> ValueRef {
        self.one(Op::Unsqueeze(Axes { axes: Some(axes) }), &[a], "unsqueeze")
    }

    pub fn squeeze(&mut self, a: ValueRef, axes: Vec<i64>) -> ValueRef {
        self.one(Op::Squeeze(Axes { axes: Some(axes) }), &[a], "squeeze")
    }

    pub fn reduce(&mut self, op: ReduceOp, a: ValueRef, axes: Vec<i64>) -> ValueRef {
        self.one(
            Op::Reduce(
                op,
                Reduce {
                    axes: Some(axes),
                    keepdims: true,
                    ..Default::default()
                },
            ),
            &[a],
            op.name(),
        )
    }

    /// `(values, indices)` of TopK along `axis`.
    pub fn top_k(
        &mut self,
        a: ValueRef,
        k: ValueRef,
        axis: i64,
        largest: bool,
    ) -> (ValueRef, ValueRef) {
        let o = self.node(
            Op::TopK(TopK {
                axis,
                largest,
                sorted: true,
            }),
            &[a, k],
            "top_k",
            2,
        );
        (o[0], o[1])
    }

    pub fn gather_elements(&mut self, data: ValueRef, index: ValueRef, axis: i64) -> ValueRef {
        self.one(
            Op::GatherElements(Axis0 { axis }),
            &[data, index],
            "gather_elements",
        )
    }

    pub fn scatter_elements(
        &mut self,
        data: ValueRef,
        index: ValueRef,
        upd: ValueRef,
        axis: i64,
    ) -> ValueRef {
        self.one(
            Op::ScatterElements(Scatter {
                axis,
                ..Default::default()
            }),
            &[data, index, upd],
            "scatter_elements",
        )
    }

    /// `idx` `[B, k]` laid out along `axis` of a rank-`rank` tensor shaped like `like`
    /// (whose axis 0 is the batch) and broadcast to `like`'s shape with `axis` set to k:
    /// the index tensor GatherElements/ScatterElements take.
    pub fn expanded_index(
        &mut self,
        idx: ValueRef,
        k: ValueRef,
        like: ValueRef,
        axis: usize,
        rank: usize,
    ) -> Result<ValueRef, PassError> {
        if axis == 0 || axis >= rank {
            return Err(PassError::Invalid(format!(
                "mod-routers: cannot route a tensor along axis {axis} of rank {rank} (axis 0 must be the batch)"
            )));
        }
        let extra: Vec<i64> = (1..rank).filter(|&a| a != axis).map(|a| a as i64).collect();
        let laid = if extra.is_empty() {
            idx
        } else {
            self.unsqueeze(idx, extra)
        };
        let sel: Vec<bool> = (0..rank).map(|a| a == axis).collect();
        let cond = self.constant(Tensor::from_bool(vec![rank], sel), "axis_mask")?;
        let shape = self.shape(like);
        let target = self.one(Op::Where, &[cond, k, shape], "target_shape");
        Ok(self.one(Op::Expand, &[laid, target], "expand_index"))
    }
}
