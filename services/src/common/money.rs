//! Currency codes, ISO 4217 minor units, and money rounding and formatting.
//!
//! Money is always `rust_decimal::Decimal`; nothing here touches binary floating point.

use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;
use std::str::FromStr;

/// A three-letter currency code, stored upper-case (`USD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CurrencyCode([u8; 3]);

/// The text was not three ASCII letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyCodeError(pub String);

impl fmt::Display for CurrencyCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed currency code '{}': expected 3 letters such as USD", self.0)
    }
}

impl std::error::Error for CurrencyCodeError {}

impl CurrencyCode {
    /// The euro, the base of every ECB reference rate.
    pub const EUR: CurrencyCode = CurrencyCode(*b"EUR");

    /// The code as text (always three upper-case ASCII letters).
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for CurrencyCode {
    type Err = CurrencyCodeError;

    /// Accepts any letter case (`usd`, `Usd`); stores upper case.
    fn from_str(s: &str) -> Result<Self, CurrencyCodeError> {
        match s.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_alphabetic()) => {
                Ok(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase(), c.to_ascii_uppercase()]))
            }
            _ => Err(CurrencyCodeError(s.to_owned())),
        }
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ISO 4217 minor units (digits after the decimal point) for every currency the ECB
/// has published a reference rate for, current and discontinued.
///
/// Source: ISO 4217 List One (current currencies, as published by the maintenance
/// agency SIX) for the current codes, and the "historic" table of ISO 4217 (List
/// Three, with minor units as given on the Wikipedia ISO 4217 page) for CYP, EEK,
/// LTL, LVL, MTL, ROL, SIT, SKK and TRL. ISK, JPY and KRW have none; the old
/// Turkish lira (TRL) had none either. HRK, RUB and BGN are still in List One.
#[rustfmt::skip]
const MINOR_UNITS: &[(&str, u32)] = &[
    ("AUD", 2), ("BGN", 2), ("BRL", 2), ("CAD", 2), ("CHF", 2), ("CNY", 2),
    ("CYP", 2), ("CZK", 2), ("DKK", 2), ("EEK", 2), ("EUR", 2), ("GBP", 2),
    ("HKD", 2), ("HRK", 2), ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2),
    ("ISK", 0), ("JPY", 0), ("KRW", 0), ("LTL", 2), ("LVL", 2), ("MTL", 2),
    ("MXN", 2), ("MYR", 2), ("NOK", 2), ("NZD", 2), ("PHP", 2), ("PLN", 2),
    ("ROL", 2), ("RON", 2), ("RUB", 2), ("SEK", 2), ("SGD", 2), ("SIT", 2),
    ("SKK", 2), ("THB", 2), ("TRL", 0), ("TRY", 2), ("USD", 2), ("ZAR", 2),
];

/// ISO 4217 minor units when the currency is in the table.
pub fn known_minor_units(code: CurrencyCode) -> Option<u32> {
    MINOR_UNITS.iter().find(|(c, _)| *c == code.as_str()).map(|(_, units)| *units)
}

/// Minor units of `code`; a currency the table does not know gets 2, the most
/// common value, so a new ECB currency still converts sensibly.
pub fn minor_units(code: CurrencyCode) -> u32 {
    known_minor_units(code).unwrap_or(2)
}

/// Rounds half-up (away from zero at exactly .5) to `dp` decimal places and
/// fixes the scale to exactly `dp`, so `11432` stays `11432` and `89.6` becomes `89.60`.
pub fn round_half_up(value: Decimal, dp: u32) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(dp);
    rounded
}

/// `value` rounded to the currency's minor units, with thousands separators and
/// the code: `1234.5` USD → `1,234.50 USD`.
pub fn format_money(value: Decimal, code: CurrencyCode) -> String {
    let text = round_half_up(value, minor_units(code)).to_string();
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let mut out = String::with_capacity(text.len() + text.len() / 3 + 4);
    out.push_str(sign);
    out.push_str(&group_thousands(int));
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out.push(' ');
    out.push_str(code.as_str());
    out
}

/// Inserts `,` every three digits from the right.
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> CurrencyCode {
        s.parse().expect("code")
    }

    fn dec(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn codes_are_case_insensitive_and_strict() {
        assert_eq!(code("usd"), code("USD"));
        assert_eq!(code("uSd").to_string(), "USD");
        for bad in ["US", "USDD", "U$D", "", "ÜSD", "12A"] {
            assert!(bad.parse::<CurrencyCode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn minor_units_table() {
        assert_eq!(minor_units(code("JPY")), 0);
        assert_eq!(minor_units(code("KRW")), 0);
        assert_eq!(minor_units(code("ISK")), 0);
        assert_eq!(minor_units(code("HUF")), 2);
        assert_eq!(minor_units(code("CYP")), 2);
        assert_eq!(known_minor_units(code("XYZ")), None);
        assert_eq!(minor_units(code("XYZ")), 2);
    }

    #[test]
    fn half_up_rounding() {
        assert_eq!(round_half_up(dec("2.5"), 0).to_string(), "3");
        assert_eq!(round_half_up(dec("0.125"), 2).to_string(), "0.13");
        assert_eq!(round_half_up(dec("0.124999"), 2).to_string(), "0.12");
        assert_eq!(round_half_up(dec("89.6"), 2).to_string(), "89.60");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_money(dec("100"), code("USD")), "100.00 USD");
        assert_eq!(format_money(dec("11432.4"), code("JPY")), "11,432 JPY");
        assert_eq!(format_money(dec("1234567.891"), code("EUR")), "1,234,567.89 EUR");
        assert_eq!(format_money(dec("999.995"), code("GBP")), "1,000.00 GBP");
        assert_eq!(format_money(dec("0"), code("JPY")), "0 JPY");
        assert_eq!(format_money(dec("-1234.5"), code("USD")), "-1,234.50 USD");
    }
}
