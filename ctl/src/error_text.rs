//! One line per failure for the operator: the error and its causes, each
//! said once. Our error types often name their cause in their own message
//! ("lock file X: Permission denied") *and* chain it as their source, so
//! printing the whole chain would say the cause twice.

/// `error` and the causes its message does not already say, joined by `: `.
#[must_use]
pub fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("lock file /var/lib/vlnet/pve1.lock: {source}")]
    struct Lock {
        source: io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = io::Error::new(io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Lock { source: inner });
        assert_eq!(
            one_line(&e),
            "lock file /var/lib/vlnet/pve1.lock: No such file or directory"
        );
        let e = e.context("starting the daemon");
        assert_eq!(
            one_line(&e),
            "starting the daemon: lock file /var/lib/vlnet/pve1.lock: No such file or directory"
        );
    }

    #[test]
    fn other_causes_are_kept() {
        let e = anyhow::anyhow!("disk full").context("writing the state");
        assert_eq!(one_line(&e), "writing the state: disk full");
    }
}
