//! Value enums shared by several commands' arguments (model variant, ideal point, link,
//! split), each turned into the core's own type.

use clap::ValueEnum;
use pal_core::config::Variant;
use pal_format::dataset::Split;

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum VariantArg {
    A,
    B,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::A => Variant::A,
            VariantArg::B => Variant::B,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum IdealArg {
    /// Prototypes in item space, a = f(Σ w p) (paper default).
    FPw,
    /// Prototypes in preference space, a = Σ w p.
    Pw,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LinkArg {
    Logistic,
    Hinge,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SplitArg {
    Train,
    Val,
    Test,
    UnseenTest,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Val => Split::Val,
            SplitArg::Test => Split::Test,
            SplitArg::UnseenTest => Split::UnseenTest,
        }
    }
}
