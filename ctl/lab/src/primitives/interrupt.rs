//! [`Interrupt`]: SIGINT and SIGTERM turned into a flag that a long lab job
//! checks between steps, so that it stops by returning an error and every
//! guard it holds cleans up (namespaces, daemons, QEMU guests).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::primitives::netns::LabError;

/// Set once SIGINT or SIGTERM has arrived.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Installs the handlers: from now on SIGINT and SIGTERM only set the
    /// flag.
    pub fn install() -> Result<Self, LabError> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag))
                .map_err(|e| LabError::io("installing the interrupt handler", e))?;
        }
        Ok(Self(flag))
    }

    /// Fails with [`LabError::Interrupted`] once a signal has arrived.
    pub fn check(&self) -> Result<(), LabError> {
        if self.0.load(Ordering::Relaxed) {
            Err(LabError::Interrupted)
        } else {
            Ok(())
        }
    }
}
