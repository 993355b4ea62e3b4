//! The bridge bypass (per VNI, opt-in with `[[vni]] bypass = true`): a
//! decapsulated known unicast IP frame for a local VM goes straight to the
//! VM's port, and a VM's known unicast IP frame for a MAC behind a remote
//! VTEP is encapsulated at the VM's port (`tc_vm_tx`), neither crossing the
//! bridge nor vlnet's overlay port. The kernel side is `ebpf/c/lib/bypass.h`;
//! this module keeps its maps (`vlnet_bypass`, `vlnet_vm_ports`) and links in
//! step with the bridges, on every read of the local MACs.
//!
//! # Layout
//! - [`eligibility`]: which ports may take the bypass, and why not (pure).
//! - [`plan`]: the entries to write or delete and the ports to attach or
//!   detach, and the MACs a recent bypass keeps local (pure).
//! - [`apply`]: reading the ports and carrying the plan out.

pub mod apply;
pub mod eligibility;
pub mod plan;

pub use apply::{Bypass, BypassError};
pub use eligibility::{verdict, PeerFacts, PortFacts, Refusal};
