//! Access logs (`httpAccessLog: PATH`, linkerd's router key): one line per request, written by a background
//! thread so the request path only formats a line and hands it over. When the writer falls behind, lines are
//! dropped and counted rather than slowing requests down.
//!
//! Line format: `<RFC 3339 time> <router> <peer> "<METHOD> <target> <version>" <status> <ms> service=<path>
//! client=<id> reqid=<l5d-reqid> trace=<trace id>`. A line is built by appending its fields (no formatting
//! machinery, the time's date and second made once a second): it is written for every request.

use std::io::Write;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::trace::HexId;

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

/// One request's line, as [`AccessLog::record`] writes it.
pub struct Entry<'a> {
    pub router: &'a str,
    /// The caller's address, as text.
    pub peer: &'a str,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: http::Version,
    pub status: u16,
    pub elapsed: Duration,
    /// The logical name, as text (`-` when the request never got one).
    pub service: &'a str,
    /// The bound client the last attempt went to (`-` when none).
    pub client: &'a str,
    pub reqid: &'a str,
    /// Hex digits by its type: written as it is.
    pub trace: &'a HexId<32>,
}

impl AccessLog {
    /// Queues the line for one request.
    pub fn record(&self, e: &Entry<'_>) {
        let mut line = String::with_capacity(192);
        push_now(&mut line);
        for field in [" ", e.router, " ", e.peer, " \"", e.method.as_str(), " "] {
            line.push_str(field);
        }
        match (e.uri.scheme(), e.uri.path_and_query()) {
            // Origin-form, the usual: the text as it came, without building the URI's string.
            (None, Some(pq)) => line.push_str(&escape(pq.as_str())),
            _ => line.push_str(&escape(&e.uri.to_string())),
        }
        let version = match e.version {
            http::Version::HTTP_09 => " HTTP/0.9\" ",
            http::Version::HTTP_10 => " HTTP/1.0\" ",
            http::Version::HTTP_2 => " HTTP/2.0\" ",
            http::Version::HTTP_3 => " HTTP/3.0\" ",
            _ => " HTTP/1.1\" ",
        };
        line.push_str(version);
        line.push_str(itoa::Buffer::new().format(e.status));
        line.push(' ');
        // Milliseconds with three decimals, rounded.
        let micros = (e.elapsed.as_nanos() + 500) / 1000;
        line.push_str(itoa::Buffer::new().format(micros / 1000));
        push_thousandths(&mut line, (micros % 1000) as u32);
        for (key, value) in [(" service=", e.service), (" client=", e.client), (" reqid=", e.reqid)] {
            line.push_str(key);
            line.push_str(&escape(value));
        }
        line.push_str(" trace=");
        line.push_str(e.trace.as_str());
        self.write(line);
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
    let mut out = String::with_capacity(24);
    push_now(&mut out);
    out
}

/// Appends the time now as `YYYY-MM-DDTHH:MM:SS.mmmZ`: the part up to the second is made once a second per
/// thread and copied.
fn push_now(out: &mut String) {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with_borrow_mut(|(secs, text)| {
        if *secs != d.as_secs() {
            *secs = d.as_secs();
            *text = date_and_second(d.as_secs() as i64);
        }
        out.push_str(text);
    });
    push_thousandths(out, d.subsec_millis());
    out.push('Z');
}

/// Appends `.` and `n` (below 1000) as three digits.
fn push_thousandths(out: &mut String, n: u32) {
    out.push('.');
    for _ in itoa::Buffer::new().format(n).len()..3 {
        out.push('0');
    }
    out.push_str(itoa::Buffer::new().format(n));
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `secs` since the epoch.
fn date_and_second(secs: i64) -> String {
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
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
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
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T" && &t[19..20] == ".", "{t}");
        assert_eq!(date_and_second(0), "1970-01-01T00:00:00");
        assert_eq!(date_and_second(951_782_400 + 86_399), "2000-02-29T23:59:59", "a leap day");
        assert_eq!(date_and_second(1_796_083_200), "2026-12-01T00:00:00");
    }

    #[test]
    fn a_line_has_every_field_and_escapes_what_a_client_wrote() {
        let (tx, rx) = sync_channel(4);
        let trace = HexId::parse("0af7651916cd43dd8448eb211c80319c").unwrap();
        let log = AccessLog { tx, dropped: Arc::new(AtomicU64::new(0)) };
        let uri: http::Uri = "/convert?to=USD&x=a%20b".parse().unwrap();
        let entry = |uri, elapsed| Entry {
            router: "egress",
            peer: "10.0.0.7",
            method: &http::Method::GET,
            uri,
            version: http::Version::HTTP_11,
            status: 200,
            elapsed,
            service: "/svc/forex-rate",
            client: "/$/inet/127.0.0.1/4140",
            reqid: "abc",
            trace: &trace,
        };
        log.record(&entry(&uri, Duration::from_nanos(1_234_005_499)));
        let line = rx.recv().unwrap();
        let (time, rest) = line.split_at(24);
        assert!(time.ends_with('Z'), "{line}");
        assert_eq!(
            rest,
            " egress 10.0.0.7 \"GET /convert?to=USD&x=a%20b HTTP/1.1\" 200 1234.005 service=/svc/forex-rate \
             client=/$/inet/127.0.0.1/4140 reqid=abc trace=0af7651916cd43dd8448eb211c80319c\n"
        );
        let absolute: http::Uri = "http://forex-rate/a\"b".parse().unwrap();
        log.record(&entry(&absolute, Duration::from_micros(7)));
        let line = rx.recv().unwrap();
        assert!(line.contains("\"GET http://forex-rate/a\\x22b HTTP/1.1\" 200 0.007 "), "{line}");
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
