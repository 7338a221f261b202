//! Access logs (`httpAccessLog: PATH`, linkerd's router key): one line per request, written by a background
//! thread so the request path only formats a line and hands it over. When the writer falls behind, lines are
//! dropped and counted rather than slowing requests down.
//!
//! Line format: `<RFC 3339 time> <router> <peer> "<METHOD> <target> <version>" <status> <ms> service=<path>
//! client=<id> reqid=<l5d-reqid> trace=<trace id>`.

use std::io::Write;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines buffered between requests and the writer thread.
const QUEUE: usize = 8192;

/// A handle to a router's access log.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens (appends to) `path` and starts its writer thread.
    pub fn open(path: &FsPath) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let name = format!("access-log:{}", path.display());
        std::thread::Builder::new().name(name).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(line) => {
                        let _ = out.write_all(line.as_bytes());
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = out.flush();
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = out.flush();
                        return;
                    }
                }
            }
        })?;
        Ok(Self { tx, dropped })
    }

    /// Queues one line (a trailing newline is added).
    pub fn write(&self, mut line: String) {
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            if self.dropped.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                tracing::warn!("access log writer is behind; dropping lines");
            }
        }
    }
}

/// A field as the log writes it: `"`, `\`, spaces, control and non-ASCII bytes become `\xHH`, so that no
/// value a client sent can end a quoted field or forge another `key=value`.
pub fn escape(field: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() && b != b'"' && b != b'\\';
    if field.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len() + 8);
    for b in field.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Seconds and milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), without a date crate.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_break_out() {
        assert_eq!(escape("/svc/forex-rate"), "/svc/forex-rate");
        assert_eq!(escape("/a\"b c"), "/a\\x22b\\x20c");
        assert_eq!(escape("x\\y\n"), "x\\x5cy\\x0a");
        assert_eq!(escape("é"), "\\xc3\\xa9");
    }

    #[test]
    fn timestamps_look_right() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }

    #[test]
    fn lines_reach_the_file() {
        let path = std::env::temp_dir().join(format!("sy-access-{}.log", std::process::id()));
        let log = AccessLog::open(&path).unwrap();
        log.write("one".into());
        log.write("two".into());
        drop(log);
        let mut text = String::new();
        for _ in 0..50 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(text, "one\ntwo\n");
        let _ = std::fs::remove_file(path);
    }
}
