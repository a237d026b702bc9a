//! Redis `INFO`, parsed into `field -> value` (used_memory, evicted_keys, …).

use std::collections::BTreeMap;

/// Parse the text of `INFO [section]`: `field:value` lines, `#` section headers skipped.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `INFO section` on `conn`, parsed.
pub async fn info<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    section: &str,
) -> redis::RedisResult<BTreeMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    Ok(parse(&text))
}

/// One numeric field of `INFO section` (0 when absent).
pub async fn number<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    section: &str,
    field: &str,
) -> redis::RedisResult<f64> {
    Ok(info(conn, section)
        .await?
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_fields_and_skips_headers() {
        let m = super::parse(
            "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:noeviction\r\n\r\n# Stats\r\nevicted_keys:3\r\n",
        );
        assert_eq!(m["used_memory"], "1024");
        assert_eq!(m["maxmemory_policy"], "noeviction");
        assert_eq!(m["evicted_keys"], "3");
        assert_eq!(m.len(), 3);
    }
}
