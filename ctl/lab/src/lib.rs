//! vlnet's lab: test-beds in network namespaces for `vlnet lab …` and the
//! integration tests under `tests/`. The `vlnet` command embeds [`cli`] as
//! its `lab` subcommand (behind its default-on `lab` feature); this crate
//! never depends on the `vlnet` crate, and starts vlnet nodes by running the
//! `vlnet` binary it is given.
//!
//! Every resource is owned by a guard whose `Drop` removes it, so a panicking
//! test leaves nothing behind; names embed the process id and a process-wide
//! counter, so tests run in parallel without clashes. All namespaces are named
//! `vlt-…`, underlay addresses come from 198.18.0.0/15 and overlay addresses
//! from the documentation TEST-NETs.
//!
//! Commands run inside a namespace through `nsenter --net=/run/netns/NAME`
//! rather than `ip netns exec`: the latter remounts `/sys` privately, which
//! hides the host's bpffs at `/sys/fs/bpf` where vlnet pins its objects.
//!
//! # Layout
//! - [`primitives`]: the pieces every bed is made of — namespaces and their
//!   processes, hosts, VMs and the underlay switch, the delay line, probes,
//!   QEMU guests, wireguard-go, vlnet nodes, the traffic generator.
//! - [`beds`]: test-beds built from them by one builder,
//!   [`Bed`](beds::bed::Bed), and its presets — multi-site scenarios, a
//!   controller and its members on a WAN with clients, a hand-made
//!   wireguard-go pair — and a migrating guest.
//! - [`jobs`]: what `vlnet lab` runs — the demo, the bench, the migration
//!   experiment — and the VM move measured by the migration tests.
//! - [`cli`]: `vlnet lab …`'s arguments and [`LabCommand::run`](cli::LabCommand::run).
pub mod beds;
pub mod cli;
pub mod jobs;
pub mod primitives;

pub use beds::wan::{Wan, WanClient, WanLink};
pub use primitives::daemon::{Daemon, Datapath, EvpnSpec, Launch, NodeSpec, VniSpec};
pub use primitives::delay::DelayLine;
pub use primitives::netns::{unique_ifname, unique_suffix, ChildGuard, LabError, NetNs};
pub use primitives::tempdir::TempDir;
pub use primitives::topology::{Host, Underlay, Vm};
pub use primitives::wggo::{WgPeer, WireguardGo};
