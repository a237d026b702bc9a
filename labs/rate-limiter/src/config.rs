//! `lab serve rate-limiter` configuration, read once at startup from the environment.
//!
//! | variable | default | example |
//! |---|---|---|
//! | `RATE_LIMIT_ALGORITHM` | `gcra` | `fixed_window`, `sliding_log`, `sliding_counter`, `token_bucket`, `in_memory` |
//! | `RATE_LIMIT_POLICY` | `5/60s burst=3` | `100/1m burst=20` |
//! | `RATE_LIMIT_FAIL_MODE` | `open` | `closed` |
//!
//! A bad value stops the server before it binds, with a message naming the variable — a
//! limiter misconfigured to "0 per minute" must not discover itself in production traffic.

use crate::limiter::Algorithm;
use crate::middleware::FailMode;
use crate::policy::{Policy, PolicyError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // Not `#[from]`: that would also make it the error's `source`, and reporters that print
    // the chain would say the same sentence twice.
    #[error("RATE_LIMIT_POLICY: {0}")]
    Policy(PolicyError),
    #[error("RATE_LIMIT_ALGORITHM: {0}")]
    Algorithm(String),
    #[error("RATE_LIMIT_FAIL_MODE: {0}")]
    FailMode(String),
}

#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    pub algorithm: Algorithm,
    pub policy: Policy,
    pub fail_mode: FailMode,
}

impl LimitConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `lookup` returns a variable's value, if set (tests pass a map instead of the process env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let algorithm = lookup("RATE_LIMIT_ALGORITHM")
            .unwrap_or_else(|| "gcra".into())
            .parse()
            .map_err(ConfigError::Algorithm)?;
        let policy = lookup("RATE_LIMIT_POLICY")
            .unwrap_or_else(|| "5/60s burst=3".into())
            .parse()
            .map_err(ConfigError::Policy)?;
        let fail_mode = lookup("RATE_LIMIT_FAIL_MODE")
            .unwrap_or_else(|| "open".into())
            .parse()
            .map_err(ConfigError::FailMode)?;
        Ok(Self {
            algorithm,
            policy,
            fail_mode,
        })
    }
}
