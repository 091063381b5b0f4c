//! The crate's version, for tools that report which build wrote or read a state.

/// This crate's version (`CARGO_PKG_VERSION`), e.g. for a command-line
/// `inspect` that reports it beside the state's
/// [`STATE_FORMAT_VERSION`](crate::STATE_FORMAT_VERSION). The state format
/// has its own version; this one says which release of the code is running.
///
/// # Examples
///
/// ```
/// let v = centering::VERSION;
/// assert_eq!(v.split('.').count(), 3);
/// assert!(v.split('.').all(|part| part.chars().next().is_some_and(|c| c.is_ascii_digit())));
/// ```
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_the_manifests() {
        assert_eq!(super::VERSION, env!("CARGO_PKG_VERSION"));
        assert!(!super::VERSION.is_empty());
    }
}
