//! The kubelet inspector.

use crate::facts::ComponentFacts;

use super::Context;

pub const NAME: &str = "kubelet";

pub fn inspect(_ctx: &Context<'_>) -> ComponentFacts {
    let mut cf = ComponentFacts::new(NAME);
    cf.unknown(&[], "not implemented yet");
    cf
}
