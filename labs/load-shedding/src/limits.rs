//! The service's protections, as one value the router is built from.
//!
//! Every scenario is a [`Limits`]: the unprotected service is a bounded pool and nothing
//! else; "shed" adds tower's concurrency limit with load shedding in front of it; and so on.
//! `lab serve load-shedding` reads the same settings from environment variables
//! ([`Limits::from_env`]), documented in `curl.md`.

use std::time::Duration;

use thiserror::Error;

/// What stands between a request and the database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Database connections in the pool (the last bound: waiters queue in sqlx's pool).
    pub pool: u32,
    /// tower `ConcurrencyLimitLayer`: requests in the handlers at once (all routes, or the
    /// checkout route alone when `recs_budget` is set). `None`: no limit.
    pub limit: Option<usize>,
    /// tower `LoadShedLayer` in front of the limit: a request that finds the limit full gets
    /// `503` + `Retry-After` at once instead of waiting for a permit.
    pub shed: bool,
    /// Priorities: `/recommendations` gets its own, smaller concurrency budget (shed when
    /// full), so the non-critical read can never take the checkout's capacity.
    pub recs_budget: Option<usize>,
    /// Deadlines: a queue in front of the pool that drops (`503 deadline_exceeded`, no SQL) a
    /// request whose deadline passed before it reached the front. The deadline is the earlier
    /// of the client's `Request-Timeout-Ms` and arrival + this queue timeout.
    pub queue_timeout: Option<Duration>,
}

impl Limits {
    /// Only the pool: what most services ship.
    pub fn unprotected(pool: u32) -> Self {
        Self {
            pool,
            limit: None,
            shed: false,
            recs_budget: None,
            queue_timeout: None,
        }
    }

    /// A concurrency limit alone: it queues, like the pool does (the pitfall).
    pub fn limit_only(pool: u32, limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::unprotected(pool)
        }
    }

    /// Concurrency limit + load shedding: the production pair of tower layers.
    pub fn shed(pool: u32, limit: usize) -> Self {
        Self {
            limit: Some(limit),
            shed: true,
            ..Self::unprotected(pool)
        }
    }

    /// The deadline queue alone.
    pub fn deadline(pool: u32, queue_timeout: Duration) -> Self {
        Self {
            queue_timeout: Some(queue_timeout),
            ..Self::unprotected(pool)
        }
    }

    /// Shedding with a separate, smaller budget for the non-critical endpoint.
    pub fn priority(pool: u32, limit: usize, recs_budget: usize) -> Self {
        Self {
            recs_budget: Some(recs_budget),
            ..Self::shed(pool, limit)
        }
    }

    /// The defaults of `lab serve`: every protection on, sized for this machine.
    pub fn serve_default() -> Self {
        Self::serve_with_pool(default_pool())
    }

    /// Every protection on, sized for a pool of `pool`: a limit of two requests per
    /// connection, half the pool for recommendations, a 100 ms queue timeout.
    pub fn serve_with_pool(pool: u32) -> Self {
        Self {
            pool,
            limit: Some(2 * pool as usize),
            shed: true,
            recs_budget: Some((pool as usize / 2).max(1)),
            queue_timeout: Some(Duration::from_millis(100)),
        }
    }

    /// `lab serve` settings: [`serve_default`](Self::serve_default), overridden by
    /// `LOAD_SHEDDING_POOL`, `LOAD_SHEDDING_LIMIT`, `LOAD_SHEDDING_SHED`,
    /// `LOAD_SHEDDING_RECS_BUDGET`, `LOAD_SHEDDING_QUEUE_TIMEOUT_MS` (`off` disables an
    /// optional one).
    pub fn from_env() -> Result<Self, LimitsError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any variable source (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, LimitsError> {
        let pool = match var("LOAD_SHEDDING_POOL") {
            None => default_pool(),
            Some(v) => parse_count("LOAD_SHEDDING_POOL", &v)?.ok_or(LimitsError::Invalid {
                var: "LOAD_SHEDDING_POOL",
                value: v,
            })? as u32,
        };
        // The other defaults follow the pool.
        let mut l = Self::serve_with_pool(pool);
        if let Some(v) = var("LOAD_SHEDDING_LIMIT") {
            l.limit = parse_count("LOAD_SHEDDING_LIMIT", &v)?;
        }
        if let Some(v) = var("LOAD_SHEDDING_SHED") {
            l.shed = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "on" | "true" | "yes" => true,
                "0" | "off" | "false" | "no" => false,
                _ => {
                    return Err(LimitsError::Invalid {
                        var: "LOAD_SHEDDING_SHED",
                        value: v,
                    });
                }
            };
        }
        if let Some(v) = var("LOAD_SHEDDING_RECS_BUDGET") {
            l.recs_budget = parse_count("LOAD_SHEDDING_RECS_BUDGET", &v)?;
        }
        if let Some(v) = var("LOAD_SHEDDING_QUEUE_TIMEOUT_MS") {
            l.queue_timeout = parse_count("LOAD_SHEDDING_QUEUE_TIMEOUT_MS", &v)?
                .map(|ms| Duration::from_millis(ms as u64));
        }
        Ok(l)
    }

    /// One line for banners and reports.
    pub fn describe(&self) -> String {
        let opt = |v: Option<usize>| v.map_or("off".to_string(), |n| n.to_string());
        format!(
            "pool {} · limit {} · shed {} · recommendations budget {} · queue timeout {}",
            self.pool,
            opt(self.limit),
            if self.shed { "on" } else { "off" },
            opt(self.recs_budget),
            self.queue_timeout
                .map_or("off".to_string(), |d| format!("{} ms", d.as_millis())),
        )
    }
}

/// Two connections per core: HikariCP's starting point (`cores * 2 + spindles`, no
/// spindles on an SSD). The pool-size scenario measures it on this machine.
pub fn default_pool() -> u32 {
    2 * cores() as u32
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A bad `LOAD_SHEDDING_*` variable.
#[derive(Debug, Error, PartialEq)]
pub enum LimitsError {
    #[error("{var}={value:?}: expected a positive whole number, or `off`")]
    Invalid { var: &'static str, value: String },
}

/// A positive count, or `off`/`none`/`0` for "no limit".
fn parse_count(var: &'static str, v: &str) -> Result<Option<usize>, LimitsError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "0" => Ok(None),
        s => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0 && *n <= 100_000)
            .map(Some)
            .ok_or(LimitsError::Invalid {
                var,
                value: v.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_limits_come_from_env_vars_and_bad_values_are_named() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let l = Limits::from_vars(vars(&[
            ("LOAD_SHEDDING_POOL", "6"),
            ("LOAD_SHEDDING_LIMIT", "off"),
            ("LOAD_SHEDDING_SHED", "off"),
            ("LOAD_SHEDDING_RECS_BUDGET", "3"),
            ("LOAD_SHEDDING_QUEUE_TIMEOUT_MS", "250"),
        ]))
        .unwrap();
        assert_eq!(l.pool, 6);
        assert_eq!(l.limit, None);
        let sized = Limits::from_vars(vars(&[("LOAD_SHEDDING_POOL", "6")])).unwrap();
        assert_eq!((sized.limit, sized.recs_budget), (Some(12), Some(3)));
        assert!(!l.shed);
        assert_eq!(l.recs_budget, Some(3));
        assert_eq!(l.queue_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            Limits::from_vars(|_| None).unwrap(),
            Limits::serve_default()
        );
        let err = Limits::from_vars(vars(&[("LOAD_SHEDDING_LIMIT", "lots")])).unwrap_err();
        assert!(err.to_string().contains("LOAD_SHEDDING_LIMIT"), "{err}");
        assert!(Limits::from_vars(vars(&[("LOAD_SHEDDING_POOL", "off")])).is_err());
    }
}
