//! The control plane: which VTEP each MAC lives behind, and the rules for
//! agreeing on it across the cluster (see DESIGN.md, "Control plane").
pub mod mobility;
