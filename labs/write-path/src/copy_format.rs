//! `COPY ... FROM STDIN` in both wire formats, and the streaming of it.
//!
//! COPY is the fastest way into Postgres because it skips per-row protocol work: no
//! statement per row, no bind of six parameters per row, one command for the whole stream.
//! The text format is what `psql \copy` sends (tab-separated, backslash escapes); the binary
//! format sends each value in its on-disk-like representation, so the server parses less
//! (and this client formats less: a float or a timestamp is 8 bytes, not a string).
//!
//! Both encoders are hand-written because they are the lesson and they are short; in
//! production a crate such as `pgcopy` or `tokio-postgres`' `BinaryCopyInWriter` does it.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgConnection;

use crate::schema::{COLUMN_COUNT, COLUMNS, Event};

/// `CopyData` messages of 64 KiB: the server parses while the client still sends.
const CHUNK: usize = 64 * 1024;

/// Which COPY format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary,
}

impl CopyFormat {
    fn statement(self, table: &str) -> String {
        match self {
            Self::Text => format!("COPY {table} ({COLUMNS}) FROM STDIN"),
            Self::Binary => format!("COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)"),
        }
    }

    pub fn encode(self, rows: &[Event]) -> Vec<u8> {
        match self {
            Self::Text => encode_text(rows),
            Self::Binary => encode_binary(rows),
        }
    }
}

/// Stream `rows` into `table` (a fixed name: `events` or the writer's staging table) with
/// one `COPY`. Returns the rows the server counted.
pub async fn copy_in(
    conn: &mut PgConnection,
    table: &'static str,
    format: CopyFormat,
    rows: &[Event],
) -> Result<u64, sqlx::Error> {
    let data = format.encode(rows);
    let mut copy = conn.copy_in_raw(&format.statement(table)).await?;
    for chunk in data.chunks(CHUNK) {
        if let Err(e) = copy.send(chunk).await {
            // Tell the server to discard what it got; the send error is the one to report.
            let _ = copy.abort("client failed while sending").await;
            return Err(e);
        }
    }
    copy.finish().await
}

/// Text format: one line per row, columns separated by tabs, `\N` for NULL (none here).
pub fn encode_text(rows: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 160);
    for e in rows {
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            e.event_id,
            e.device_id,
            escape_text(&e.kind),
            e.value,
            escape_text(&e.payload),
            e.created_at.format("%Y-%m-%d %H:%M:%S%.6f+00"),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// Backslash, tab, newline and carriage return would end a field or a row early.
fn escape_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '\t', '\n', '\r']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.into()
}

/// Postgres' epoch for timestamps in binary form.
fn pg_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// Binary format: a signature and header, then per row a field count and, per field, a
/// length and the value in network byte order; a trailer of -1.
pub fn encode_binary(rows: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + rows.len() * 150 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    let epoch = pg_epoch();
    for e in rows {
        out.extend_from_slice(&(COLUMN_COUNT as i16).to_be_bytes());
        field(&mut out, e.event_id.as_bytes());
        field(&mut out, &e.device_id.to_be_bytes());
        field(&mut out, e.kind.as_bytes());
        field(&mut out, &e.value.to_bits().to_be_bytes());
        field(&mut out, e.payload.as_bytes());
        let micros = (e.created_at - epoch)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        field(&mut out, &micros.to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_what_would_break_a_row() {
        assert_eq!(escape_text("a\tb\nc\\d"), "a\\tb\\nc\\\\d");
        assert_eq!(escape_text("plain"), "plain");
    }

    #[test]
    fn binary_has_the_signature_and_the_trailer() {
        let rows = crate::schema::generate(1, 0..2);
        let b = encode_binary(&rows);
        assert!(b.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert!(b.ends_with(&[0xff, 0xff]));
    }
}
