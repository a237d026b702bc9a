//! Redis Streams as the broker: one stream per route, consumer groups, `XACK`, and
//! `XAUTOCLAIM` for the entries a dead consumer read and never acknowledged.
//!
//! Delivery is at least once by construction: an entry stays in its group's pending entries
//! list (PEL) until `XACK`; a consumer that dies before acking leaves it there, and another
//! consumer claims it once it has been idle for a while. So every consumer must tolerate
//! duplicates ([`crate::inbox`]).
//!
//! The redis crate's typed stream API sits behind a cargo feature this workspace does not
//! enable, so the few commands used here are spelled out with `redis::cmd`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use serde_json::Value;
use uuid::Uuid;

/// One message, as the relay publishes it: the outbox row's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The outbox row's id: the consumer's dedupe key.
    pub id: Uuid,
    pub aggregatetype: String,
    pub aggregateid: String,
    pub kind: String,
    pub payload: Value,
    /// When the writer inserted the outbox row, µs since the epoch (the writer's clock).
    pub created_us: i64,
}

impl Message {
    /// How long ago it was written (0 if the clock went backwards).
    pub fn age(&self) -> Duration {
        Duration::from_micros(now_us().saturating_sub(self.created_us).max(0) as u64)
    }
}

/// µs since the epoch on this machine's clock.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A message as a consumer received it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id (`1700000000000-0`): what `XACK` takes.
    pub entry_id: String,
    pub message: Message,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("stream entry {0} is not a message: {1}")]
    Malformed(String, String),
}

/// A connection to the broker and the key prefix of one scenario's streams.
#[derive(Clone)]
pub struct Broker {
    conn: MultiplexedConnection,
    prefix: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("prefix", &self.prefix)
            .finish()
    }
}

type RawEntry = (String, HashMap<String, String>);

impl Broker {
    /// A connection of its own. A consumer that blocks in `XREADGROUP` needs one: a blocked
    /// command holds up every other command on a multiplexed connection.
    pub async fn connect(client: &redis::Client, prefix: &str) -> Result<Self, BrokerError> {
        Ok(Self {
            conn: client.get_multiplexed_async_connection().await?,
            prefix: prefix.to_string(),
        })
    }

    /// The stream for a route: `<prefix>outbox.event.<aggregatetype>`, Debezium's default
    /// topic name for the outbox event router.
    pub fn stream(&self, route: &str) -> String {
        format!("{}outbox.event.{route}", self.prefix)
    }

    /// `XADD` every message to its route's stream, in one round trip.
    pub async fn publish(&mut self, messages: &[Message]) -> Result<(), BrokerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            pipe.cmd("XADD")
                .arg(self.stream(&m.aggregatetype))
                .arg("*")
                .arg("id")
                .arg(m.id.to_string())
                .arg("aggregatetype")
                .arg(&m.aggregatetype)
                .arg("aggregateid")
                .arg(&m.aggregateid)
                .arg("type")
                .arg(&m.kind)
                .arg("payload")
                .arg(m.payload.to_string())
                .arg("created_us")
                .arg(m.created_us)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn).await?;
        Ok(())
    }

    /// Create `group` on `route`'s stream, reading from the beginning; fine if it exists.
    pub async fn ensure_group(&mut self, route: &str, group: &str) -> Result<(), BrokerError> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(route))
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// `XREADGROUP ... STREAMS <stream> >`: entries never delivered to this group. With
    /// `block`, waits up to that long for one (keep it under the client's 500 ms response
    /// timeout).
    pub async fn read_new(
        &mut self,
        route: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(self.stream(route)).arg(">");
        let reply: Option<Vec<(String, Vec<RawEntry>)>> = cmd.query_async(&mut self.conn).await?;
        let entries = reply.into_iter().flatten().flat_map(|(_, entries)| entries);
        entries.map(parse).collect()
    }

    /// `XAUTOCLAIM`: take over entries of this group that were delivered to some consumer
    /// and not acknowledged for at least `min_idle` (that consumer is presumed dead).
    pub async fn claim_idle(
        &mut self,
        route: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let (_next, entries, _deleted): (String, Vec<RawEntry>, Vec<String>) =
            redis::cmd("XAUTOCLAIM")
                .arg(self.stream(route))
                .arg(group)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg("0")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut self.conn)
                .await?;
        entries.into_iter().map(parse).collect()
    }

    pub async fn ack(
        &mut self,
        route: &str,
        group: &str,
        entry_id: &str,
    ) -> Result<(), BrokerError> {
        redis::cmd("XACK")
            .arg(self.stream(route))
            .arg(group)
            .arg(entry_id)
            .query_async::<()>(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Every entry on `route`'s stream, in stream order (`XRANGE - +`, in pages).
    pub async fn all(&mut self, route: &str) -> Result<Vec<Delivery>, BrokerError> {
        let mut out = Vec::new();
        let mut start = "-".to_string();
        loop {
            let page: Vec<RawEntry> = redis::cmd("XRANGE")
                .arg(self.stream(route))
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn)
                .await?;
            let Some(last) = page.last() else { break };
            start = format!("({}", last.0);
            let n = page.len();
            for e in page {
                out.push(parse(e)?);
            }
            if n < 1000 {
                break;
            }
        }
        Ok(out)
    }

    /// The group's backlog: entries not yet delivered (`lag`) plus delivered and not yet
    /// acknowledged (`pending`), from `XINFO GROUPS` (Redis 7). 0 means fully consumed.
    pub async fn backlog(&mut self, route: &str, group: &str) -> Result<u64, BrokerError> {
        let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.stream(route))
            .query_async(&mut self.conn)
            .await?;
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => *n as u64,
            // `lag` is nil when Redis cannot tell (after deletions): treat as not drained.
            _ => 1,
        };
        for g in groups {
            let name = match g.get("name") {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            if name == group {
                return Ok(int(g.get("pending")) + int(g.get("lag")));
            }
        }
        Ok(u64::MAX)
    }
}

fn parse((entry_id, mut f): RawEntry) -> Result<Delivery, BrokerError> {
    let bad = |what: &str| BrokerError::Malformed(entry_id.clone(), what.to_string());
    let mut take = |k: &str| f.remove(k).ok_or_else(|| bad(k));
    let message = Message {
        id: take("id")?.parse().map_err(|_| bad("id"))?,
        aggregatetype: take("aggregatetype")?,
        aggregateid: take("aggregateid")?,
        kind: take("type")?,
        payload: serde_json::from_str(&take("payload")?).map_err(|_| bad("payload"))?,
        created_us: take("created_us")?.parse().map_err(|_| bad("created_us"))?,
    };
    Ok(Delivery { entry_id, message })
}
