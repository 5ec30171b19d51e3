//! Lossless decimal numbers: the exchange's decimal text, kept digit for digit.
//!
//! Binance sends prices and volumes as decimal strings padded per column
//! ("0.123400", "1520"). A [`Decimal`] keeps sign, magnitude and scale so that
//! `Display` reproduces the accepted text exactly; `to_f64` gives the
//! correctly rounded value the SQLite projection stores.

use std::cmp::Ordering;
use std::fmt;

/// Most digits a decimal may carry; 10^38 < 2^128 so the magnitude fits a `u128`.
pub const MAX_DIGITS: usize = 38;

/// A decimal number `(-1)^neg × mag × 10^-scale`, kept exactly as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Decimal {
    neg: bool,
    mag: u128,
    scale: u8,
}

/// Why a decimal text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty decimal")]
    Empty,
    #[error("unexpected character {ch:?} at position {pos} in decimal {text:?}")]
    BadChar { text: String, ch: char, pos: usize },
    #[error("decimal {0:?} has a superfluous leading zero")]
    LeadingZero(String),
    #[error("decimal {0:?} has more than 38 digits")]
    TooLong(String),
}

impl Decimal {
    /// Builds a decimal from its parts; `None` when `scale` exceeds 38 or `mag` has more than 38 digits.
    pub fn from_parts(neg: bool, mag: u128, scale: u8) -> Option<Decimal> {
        if usize::from(scale) > MAX_DIGITS || mag >= 10u128.pow(MAX_DIGITS as u32) {
            return None;
        }
        Some(Decimal { neg, mag, scale })
    }

    /// Parses the grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?` — the form the exchange
    /// writes — so that parsing then printing gives the same text back.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(DecimalError::Empty);
        }
        let (neg, digits_start) = if bytes.first() == Some(&b'-') { (true, 1) } else { (false, 0) };
        let mut mag: u128 = 0;
        let mut ndigits = 0usize;
        let mut int_digits = 0usize;
        let mut scale: Option<usize> = None;
        for (pos, &b) in bytes.iter().enumerate().skip(digits_start) {
            match b {
                b'0'..=b'9' => {
                    ndigits += 1;
                    if ndigits > MAX_DIGITS {
                        return Err(DecimalError::TooLong(text.to_owned()));
                    }
                    mag = mag * 10 + u128::from(b - b'0');
                    match scale.as_mut() {
                        Some(s) => *s += 1,
                        None => int_digits += 1,
                    }
                }
                b'.' if scale.is_none() && int_digits > 0 => scale = Some(0),
                _ => {
                    let ch = text[pos..].chars().next().unwrap_or('?');
                    return Err(DecimalError::BadChar { text: text.to_owned(), ch, pos });
                }
            }
        }
        if int_digits == 0 || scale == Some(0) {
            // "-", "", "1." — no digits where digits are required.
            let pos = bytes.len();
            return Err(DecimalError::BadChar { text: text.to_owned(), ch: '∅', pos });
        }
        if int_digits > 1 && bytes.get(digits_start) == Some(&b'0') {
            return Err(DecimalError::LeadingZero(text.to_owned()));
        }
        let scale = scale.unwrap_or(0) as u8;
        Ok(Decimal { neg, mag, scale })
    }

    pub fn is_negative(&self) -> bool {
        self.neg && self.mag != 0
    }
    /// Whether the text had a minus sign (kept even for "-0").
    pub fn sign_bit(&self) -> bool {
        self.neg
    }
    pub fn mantissa(&self) -> u128 {
        self.mag
    }
    pub fn scale(&self) -> u8 {
        self.scale
    }

    /// The nearest `f64`, rounded correctly (what Python's `float(text)` gives).
    pub fn to_f64(&self) -> f64 {
        // Both operands are exact in f64, so one IEEE division rounds correctly.
        let v = if self.mag < (1u128 << 53) && self.scale <= 22 {
            // Through u64: a u128 → f64 conversion is a library call, this one an instruction.
            (self.mag as u64) as f64 / POW10_F64[usize::from(self.scale)]
        } else {
            self.to_string().trim_start_matches('-').parse::<f64>().unwrap_or(f64::NAN)
        };
        if self.neg { -v } else { v }
    }
}

const POW10_F64: [f64; 23] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mag.to_string();
        let scale = usize::from(self.scale);
        if self.neg {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            write!(f, "0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

impl std::str::FromStr for Decimal {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

/// Magnitude comparison of `a×10^-sa` and `b×10^-sb` without floating point.
fn cmp_mag(a: u128, sa: u8, b: u128, sb: u8) -> Ordering {
    if sa == sb {
        return a.cmp(&b);
    }
    if sa < sb {
        let factor = 10u128.pow(u32::from(sb - sa));
        match a.checked_mul(factor) {
            Some(a) => a.cmp(&b),
            None => Ordering::Greater,
        }
    } else {
        cmp_mag(b, sb, a, sa).reverse()
    }
}

impl Ord for Decimal {
    /// Numeric order; equal values of different scale compare by scale so the
    /// order stays consistent with `Eq` (which is textual).
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other).then(self.scale.cmp(&other.scale)).then(self.neg.cmp(&other.neg))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Decimal {
    /// Compares numeric values only ("1.50" equals "1.5").
    pub fn cmp_value(&self, other: &Decimal) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => cmp_mag(self.mag, self.scale, other.mag, other.scale),
            (true, true) => cmp_mag(other.mag, other.scale, self.mag, self.scale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exchange_text() {
        for t in ["0", "0.000000", "0.123400", "1520", "-3.5", "98765.43210000", "0.00000001"] {
            assert_eq!(Decimal::parse(t).unwrap().to_string(), t);
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for t in ["", "-", "1.", ".5", "01", "1e5", "1,5", "+1", "1.2.3", " 1", "١"] {
            assert!(Decimal::parse(t).is_err(), "{t:?} should be rejected");
        }
        assert!(matches!(Decimal::parse("1x"), Err(DecimalError::BadChar { pos: 1, ch: 'x', .. })));
    }

    #[test]
    fn compares_across_scales() {
        let d = |s| Decimal::parse(s).unwrap();
        assert_eq!(d("1.50").cmp_value(&d("1.5")), Ordering::Equal);
        assert_eq!(d("1.49").cmp_value(&d("1.5")), Ordering::Less);
        assert_eq!(d("-2").cmp_value(&d("1")), Ordering::Less);
        assert_eq!(d("-2").cmp_value(&d("-1.999")), Ordering::Less);
        assert_eq!(d("100000000000000000000000000000000000").cmp_value(&d("0.00000000001")), Ordering::Greater);
    }

    #[test]
    fn converts_to_nearest_f64() {
        for t in ["0.123400", "12345.678901", "0.1", "99999999999999999999.5", "3"] {
            assert_eq!(Decimal::parse(t).unwrap().to_f64(), t.parse::<f64>().unwrap());
        }
        assert_eq!(Decimal::parse("-0.5").unwrap().to_f64(), -0.5);
    }
}
