//! Op families without attributes of their own, where one variant stands for many ONNX
//! ops of the same shape rule: element-wise unary, broadcasting binary, variadic, reductions.

/// Declares a fieldless enum whose variants each have a text-format name and an ONNX
/// op type, with lookups both ways.
macro_rules! named_kinds {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal / $onnx:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Name in the text format.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// ONNX op type (default domain).
            pub fn onnx_type(self) -> &'static str {
                match self { $($name::$variant => $onnx),* }
            }

            pub fn from_name(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }

            pub fn from_onnx_type(s: &str) -> Option<$name> {
                match s { $($onnx => Some($name::$variant),)* _ => None }
            }
        }
    };
}

named_kinds! {
    /// Element-wise ops of one input and no attributes; output type = input type, except
    /// `is_nan`/`is_inf` (bool) and `not` (bool in, bool out).
    UnaryOp {
        Abs = "abs" / "Abs",
        Acos = "acos" / "Acos",
        Acosh = "acosh" / "Acosh",
        Asin = "asin" / "Asin",
        Asinh = "asinh" / "Asinh",
        Atan = "atan" / "Atan",
        Atanh = "atanh" / "Atanh",
        Ceil = "ceil" / "Ceil",
        Cos = "cos" / "Cos",
        Cosh = "cosh" / "Cosh",
        Erf = "erf" / "Erf",
        Exp = "exp" / "Exp",
        Floor = "floor" / "Floor",
        HardSwish = "hard_swish" / "HardSwish",
        Identity = "identity" / "Identity",
        IsNaN = "is_nan" / "IsNaN",
        Log = "log" / "Log",
        Mish = "mish" / "Mish",
        Neg = "neg" / "Neg",
        Not = "not" / "Not",
        Reciprocal = "reciprocal" / "Reciprocal",
        Relu = "relu" / "Relu",
        Round = "round" / "Round",
        Sigmoid = "sigmoid" / "Sigmoid",
        Sign = "sign" / "Sign",
        Sin = "sin" / "Sin",
        Sinh = "sinh" / "Sinh",
        Softplus = "softplus" / "Softplus",
        Softsign = "softsign" / "Softsign",
        Sqrt = "sqrt" / "Sqrt",
        Tan = "tan" / "Tan",
        Tanh = "tanh" / "Tanh",
    }
}

named_kinds! {
    /// Element-wise ops of two inputs with numpy broadcasting. Comparisons and logic ops
    /// give bool; the rest give the input type.
    BinaryOp {
        Add = "add" / "Add",
        Sub = "sub" / "Sub",
        Mul = "mul" / "Mul",
        Div = "div" / "Div",
        Pow = "pow" / "Pow",
        PRelu = "prelu" / "PRelu",
        Equal = "equal" / "Equal",
        Greater = "greater" / "Greater",
        GreaterOrEqual = "greater_or_equal" / "GreaterOrEqual",
        Less = "less" / "Less",
        LessOrEqual = "less_or_equal" / "LessOrEqual",
        And = "and" / "And",
        Or = "or" / "Or",
        Xor = "xor" / "Xor",
        BitwiseAnd = "bitwise_and" / "BitwiseAnd",
        BitwiseOr = "bitwise_or" / "BitwiseOr",
        BitwiseXor = "bitwise_xor" / "BitwiseXor",
    }
}

impl BinaryOp {
    /// Ops whose result is bool whatever the input type.
    pub fn is_predicate(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
        )
    }
}

named_kinds! {
    /// Element-wise ops over any number of broadcasting inputs.
    VariadicOp {
        Max = "max" / "Max",
        Min = "min" / "Min",
        Sum = "sum" / "Sum",
        Mean = "mean" / "Mean",
    }
}

named_kinds! {
    /// Reductions over `axes` (attribute when constant, else the second input).
    ReduceOp {
        Mean = "reduce_mean" / "ReduceMean",
        Sum = "reduce_sum" / "ReduceSum",
        Max = "reduce_max" / "ReduceMax",
        Min = "reduce_min" / "ReduceMin",
        Prod = "reduce_prod" / "ReduceProd",
        L1 = "reduce_l1" / "ReduceL1",
        L2 = "reduce_l2" / "ReduceL2",
        LogSum = "reduce_log_sum" / "ReduceLogSum",
        LogSumExp = "reduce_log_sum_exp" / "ReduceLogSumExp",
        SumSquare = "reduce_sum_square" / "ReduceSumSquare",
    }
}
