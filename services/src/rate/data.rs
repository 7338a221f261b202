//! The ECB reference-rate history: the embedded zip, unpacked and parsed into a
//! compact table at start-up.
//!
//! The zip holds one deflated CSV (`Date,USD,JPY,…,` newest row first, `N/A` for
//! no rate). We read the zip's local file header ourselves, inflate with flate2
//! and check the CRC-32, so a damaged build fails at start-up, not mid-request.

use crate::common::{CurrencyCode, Date};
use flate2::read::DeflateDecoder;
use rust_decimal::Decimal;
use std::fmt;
use std::io::Read;

/// The ECB history shipped with the service (from `services/data/`).
pub static EMBEDDED_ZIP: &[u8] = include_bytes!("../../data/eurofxref-hist.zip");

const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIR_SIG: u32 = 0x0605_4b50;
const METHOD_DEFLATE: u16 = 8;
/// General-purpose flag bit 3: sizes and CRC come after the data instead.
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
/// The CSV is about 2 MB; refuse anything absurd before allocating for it.
const MAX_CSV_BYTES: u32 = 64 << 20;

/// Why the rate data could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load the ECB rate data: {}", self.0)
    }
}

impl std::error::Error for DataError {}

fn err<T>(message: impl Into<String>) -> Result<T, DataError> {
    Err(DataError(message.into()))
}

/// A currency as the table knows it: the euro (always 1) or a CSV column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Currency {
    /// The base currency, not a column.
    Euro,
    /// Index of the currency's column.
    Column(usize),
}

/// Every business day's rates: dates ascending, one column of
/// `Option<Decimal>` (units per euro) per currency.
#[derive(Debug)]
pub struct RateTable {
    dates: Vec<Date>,
    currencies: Vec<CurrencyCode>,
    columns: Vec<Vec<Option<Decimal>>>,
}

impl RateTable {
    /// The table from the data compiled into the binary.
    pub fn load_embedded() -> Result<Self, DataError> {
        Self::from_zip(EMBEDDED_ZIP)
    }

    /// The table from a zip holding exactly one deflated CSV.
    pub fn from_zip(zip: &[u8]) -> Result<Self, DataError> {
        let csv = inflate_single_member(zip)?;
        let text = std::str::from_utf8(&csv).or_else(|e| err(format!("CSV is not UTF-8: {e}")))?;
        Self::from_csv(text)
    }

    /// The table from the ECB CSV text.
    pub fn from_csv(text: &str) -> Result<Self, DataError> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return err("CSV is empty");
        };
        let currencies = parse_header(header)?;
        let mut table = RateTable { dates: Vec::new(), currencies, columns: Vec::new() };
        table.columns = vec![Vec::new(); table.currencies.len()];
        for (index, line) in lines {
            table.push_row(index + 1, line)?;
        }
        table.sort_ascending()?;
        Ok(table)
    }

    fn push_row(&mut self, line_no: usize, line: &str) -> Result<(), DataError> {
        let mut fields = split_fields(line);
        let date_text = fields.next().unwrap_or("");
        let date = date_text.parse::<Date>().or_else(|e| err(format!("line {line_no}: {e}")))?;
        let values: Vec<&str> = fields.collect();
        if values.len() != self.currencies.len() {
            return err(format!("line {line_no}: {} rates for {} currencies", values.len(), self.currencies.len()));
        }
        for (column, text) in self.columns.iter_mut().zip(values) {
            column.push(parse_rate(text).or_else(|e| err(format!("line {line_no}: {e}")))?);
        }
        self.dates.push(date);
        Ok(())
    }

    /// The ECB writes newest first; we keep dates ascending for binary search.
    fn sort_ascending(&mut self) -> Result<(), DataError> {
        let mut order: Vec<usize> = (0..self.dates.len()).collect();
        order.sort_by_key(|&i| self.dates[i]);
        if let Some(pair) = order.windows(2).find(|w| self.dates[w[0]] == self.dates[w[1]]) {
            return err(format!("date {} appears twice", self.dates[pair[0]]));
        }
        self.dates = order.iter().map(|&i| self.dates[i]).collect();
        for column in &mut self.columns {
            *column = order.iter().map(|&i| column[i]).collect();
        }
        if self.dates.is_empty() {
            return err("CSV has no rows");
        }
        Ok(())
    }

    /// The first business day in the data.
    pub fn first_date(&self) -> Date {
        // `sort_ascending` guarantees at least one row.
        self.dates.first().copied().unwrap_or(Date::from_days(0))
    }

    /// The last business day in the data.
    pub fn last_date(&self) -> Date {
        self.dates.last().copied().unwrap_or(Date::from_days(0))
    }

    /// Number of business days.
    pub fn len(&self) -> usize {
        self.dates.len()
    }

    /// Whether the table has no rows (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.dates.is_empty()
    }

    /// The row of the latest business day on or before `date`.
    pub fn row_on_or_before(&self, date: Date) -> Option<usize> {
        self.dates.partition_point(|d| *d <= date).checked_sub(1)
    }

    /// Rows of the business days from `start` to `end`, inclusive.
    pub fn rows_between(&self, start: Date, end: Date) -> std::ops::Range<usize> {
        let from = self.dates.partition_point(|d| *d < start);
        let to = self.dates.partition_point(|d| *d <= end);
        from..to.max(from)
    }

    /// The date of a row.
    pub fn date_at(&self, row: usize) -> Option<Date> {
        self.dates.get(row).copied()
    }

    /// How the table knows `code`, if it does.
    pub fn currency(&self, code: CurrencyCode) -> Option<Currency> {
        if code == CurrencyCode::EUR {
            return Some(Currency::Euro);
        }
        self.currencies.iter().position(|c| *c == code).map(Currency::Column)
    }

    /// Units of `currency` per euro on a row; `None` when the ECB published none.
    pub fn per_eur(&self, currency: Currency, row: usize) -> Option<Decimal> {
        match currency {
            Currency::Euro => (row < self.dates.len()).then_some(Decimal::ONE),
            Currency::Column(c) => self.columns.get(c)?.get(row).copied().flatten(),
        }
    }

    /// The last date before `row` with a rate for `currency`.
    pub fn last_published_before(&self, currency: Currency, row: usize) -> Option<Date> {
        (0..row.min(self.dates.len()))
            .rev()
            .find(|&r| self.per_eur(currency, r).is_some())
            .and_then(|r| self.date_at(r))
    }

    /// The first date after `row` with a rate for `currency`.
    pub fn first_published_after(&self, currency: Currency, row: usize) -> Option<Date> {
        (row.saturating_add(1)..self.dates.len())
            .find(|&r| self.per_eur(currency, r).is_some())
            .and_then(|r| self.date_at(r))
    }

    /// The currencies with a rate on a row, EUR included, sorted.
    pub fn currencies_on(&self, row: usize) -> Vec<CurrencyCode> {
        let mut codes: Vec<CurrencyCode> = self
            .currencies
            .iter()
            .enumerate()
            .filter(|(c, _)| self.per_eur(Currency::Column(*c), row).is_some())
            .map(|(_, code)| *code)
            .collect();
        codes.push(CurrencyCode::EUR);
        codes.sort();
        codes
    }

    /// Every currency column in the data (EUR not included), in CSV order.
    pub fn all_currencies(&self) -> &[CurrencyCode] {
        &self.currencies
    }
}

/// Fields of a CSV line, without the empty field the trailing comma makes.
fn split_fields(line: &str) -> impl Iterator<Item = &str> {
    let line = line.trim_end_matches(['\r', ' ']);
    line.strip_suffix(',').unwrap_or(line).split(',').map(str::trim)
}

fn parse_header(header: &str) -> Result<Vec<CurrencyCode>, DataError> {
    let mut fields = split_fields(header.trim_start_matches('\u{feff}'));
    if fields.next() != Some("Date") {
        return err("CSV header must start with 'Date'");
    }
    let mut codes = Vec::new();
    for field in fields {
        let code = field.parse::<CurrencyCode>().or_else(|e| err(format!("header: {e}")))?;
        if code == CurrencyCode::EUR || codes.contains(&code) {
            return err(format!("header: unexpected column {code}"));
        }
        codes.push(code);
    }
    Ok(codes)
}

fn parse_rate(text: &str) -> Result<Option<Decimal>, String> {
    if text == "N/A" || text.is_empty() {
        return Ok(None);
    }
    let valid = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match text.parse::<Decimal>() {
        Ok(value) if valid && value > Decimal::ZERO => Ok(Some(value)),
        _ => Err(format!("'{text}' is not a positive decimal rate")),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, DataError> {
    match bytes.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_le_bytes([a, b])),
        _ => err("zip is truncated"),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, DataError> {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => err("zip is truncated"),
    }
}

/// The single member of a zip, inflated and CRC-checked.
pub fn inflate_single_member(zip: &[u8]) -> Result<Vec<u8>, DataError> {
    if u32_at(zip, 0)? != LOCAL_HEADER_SIG {
        return err("not a zip file (no local file header at the start)");
    }
    let flags = u16_at(zip, 6)?;
    let method = u16_at(zip, 8)?;
    let crc = u32_at(zip, 14)?;
    let compressed = u32_at(zip, 18)? as usize;
    let size = u32_at(zip, 22)?;
    let name_len = usize::from(u16_at(zip, 26)?);
    let extra_len = usize::from(u16_at(zip, 28)?);
    if method != METHOD_DEFLATE {
        return err(format!("zip member uses method {method}, expected deflate (8)"));
    }
    if flags & FLAG_DATA_DESCRIPTOR != 0 || flags & 1 != 0 {
        return err(format!("zip member is encrypted or streamed (flags {flags:#x}); repack it plainly"));
    }
    if size > MAX_CSV_BYTES {
        return err(format!("zip member claims {size} bytes, more than we accept"));
    }
    let start = 30 + name_len + extra_len;
    let end = start + compressed;
    let Some(data) = zip.get(start..end) else {
        return err("zip is truncated inside the compressed data");
    };
    if u32_at(zip, end)? != CENTRAL_HEADER_SIG || entry_count(zip)? != 1 {
        return err("zip must hold exactly one file");
    }
    let mut out = Vec::with_capacity(size as usize);
    DeflateDecoder::new(data)
        .take(u64::from(size) + 1)
        .read_to_end(&mut out)
        .or_else(|e| err(format!("inflating the CSV failed: {e}")))?;
    if out.len() as u64 != u64::from(size) {
        return err(format!("inflated {} bytes, the zip header says {size}", out.len()));
    }
    let actual = crc32fast::hash(&out);
    if actual != crc {
        return err(format!("CRC-32 mismatch: computed {actual:08x}, zip header says {crc:08x}"));
    }
    Ok(out)
}

/// Total entries from the end-of-central-directory record (searched backwards,
/// since a zip comment may follow it).
fn entry_count(zip: &[u8]) -> Result<u16, DataError> {
    let lowest = zip.len().saturating_sub(22 + usize::from(u16::MAX));
    let found =
        (lowest..=zip.len().saturating_sub(22)).rev().find(|&at| u32_at(zip, at).ok() == Some(END_OF_CENTRAL_DIR_SIG));
    match found {
        Some(at) => u16_at(zip, at + 10),
        None => err("zip has no end-of-central-directory record"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().expect("date")
    }

    fn code(s: &str) -> CurrencyCode {
        s.parse().expect("code")
    }

    #[test]
    fn loads_the_embedded_history() {
        let table = RateTable::load_embedded().expect("embedded data loads");
        assert_eq!(table.len(), 7126);
        assert_eq!(table.first_date(), d("1999-01-04"));
        assert_eq!(table.last_date(), d("2026-10-30"));
        assert_eq!(table.all_currencies().len(), 41);
        let usd = table.currency(code("USD")).expect("USD");
        let row = table.row_on_or_before(d("2016-09-05")).expect("row");
        assert_eq!(table.per_eur(usd, row), Some("1.1156".parse().expect("dec")));
        // Every ECB currency has an ISO 4217 entry in our minor-units table.
        for c in table.all_currencies() {
            assert!(crate::common::money::known_minor_units(*c).is_some(), "{c}");
        }
    }

    #[test]
    fn small_csv_with_gaps() {
        let csv = "Date,USD,CYP,\n2016-09-06,1.5,N/A,\n2016-09-02,1.25,0.5,\n";
        let t = RateTable::from_csv(csv).expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t.row_on_or_before(d("2016-09-01")), None);
        assert_eq!(t.row_on_or_before(d("2016-09-05")), Some(0));
        assert_eq!(t.row_on_or_before(d("2030-01-01")), Some(1));
        let cyp = t.currency(code("cyp")).expect("CYP");
        assert_eq!(t.per_eur(cyp, 1), None);
        assert_eq!(t.last_published_before(cyp, 1), Some(d("2016-09-02")));
        assert_eq!(t.currencies_on(1), vec![code("EUR"), code("USD")]);
        assert_eq!(t.rows_between(d("2016-09-03"), d("2016-09-06")), 1..2);
        assert_eq!(t.rows_between(d("2016-09-07"), d("2016-09-01")), 2..2);
    }

    #[test]
    fn rejects_bad_csv() {
        for (csv, needle) in [
            ("", "empty"),
            ("Day,USD,\n", "Date"),
            ("Date,USD,\n2016-09-31,1.1,\n", "line 2"),
            ("Date,USD,JPY,\n2016-09-05,1.1,\n", "1 rates for 2"),
            ("Date,USD,\n2016-09-05,-1.1,\n", "positive"),
            ("Date,USD,\n2016-09-05,1.1,\n2016-09-05,1.2,\n", "twice"),
            ("Date,USD,\n", "no rows"),
        ] {
            let e = RateTable::from_csv(csv).expect_err(csv);
            assert!(e.0.contains(needle), "{csv:?}: {e}");
        }
    }

    #[test]
    fn rejects_damaged_zips() {
        assert!(inflate_single_member(b"PK").is_err());
        assert!(inflate_single_member(b"not a zip at all, clearly").is_err());
        let mut bad_crc = EMBEDDED_ZIP.to_vec();
        bad_crc[14] ^= 0xff;
        assert!(inflate_single_member(&bad_crc).expect_err("crc").0.contains("CRC-32"));
        let truncated = &EMBEDDED_ZIP[..EMBEDDED_ZIP.len() / 2];
        assert!(inflate_single_member(truncated).is_err());
        let mut stored = EMBEDDED_ZIP.to_vec();
        stored[8] = 0;
        assert!(inflate_single_member(&stored).expect_err("method").0.contains("deflate"));
    }
}
