//! Timestamp units and conversions.
//!
//! Every metric carries nanoseconds since the Unix epoch (UTC). Dialects send
//! other units: line protocol names a precision, OpenTSDB and KairosDB send
//! seconds or milliseconds and leave the receiver to tell which
//! (`shared/reference/ANCHORS.md` section 2.9 compares the rules).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// A timestamp precision, as line protocol's `precision` parameter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Nanoseconds (`n`, `ns`).
    #[serde(alias = "n")]
    Ns,
    /// Microseconds (`u`, `us`, `µ`, `µs`).
    #[serde(alias = "u")]
    Us,
    /// Milliseconds (`ms`).
    Ms,
    /// Seconds (`s`).
    S,
    /// Minutes (`m`).
    M,
    /// Hours (`h`).
    H,
}

impl Precision {
    /// Parse a precision name: `n`, `ns`, `u`, `us`, `µ`, `µs`, `ms`, `s`, `m`, `h`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "n" | "ns" => Precision::Ns,
            "u" | "us" | "µ" | "µs" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            "m" => Precision::M,
            "h" => Precision::H,
            _ => return None,
        })
    }

    /// Nanoseconds in one unit.
    pub const fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        }
    }

    /// `value` in this unit as nanoseconds; `None` when it does not fit in i64.
    pub fn to_ns(self, value: i64) -> Option<i64> {
        value.checked_mul(self.nanos())
    }

    /// Nanoseconds as a whole number of this unit, truncated toward zero (as Go does).
    pub fn from_ns(self, ns: i64) -> i64 {
        ns / self.nanos()
    }

    /// The canonical short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
            Precision::M => "m",
            Precision::H => "h",
        }
    }
}

/// How an integer timestamp is told to be seconds or milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondsOrMillis {
    /// OpenTSDB: a value that does not fit in 32 bits is milliseconds and must
    /// then have at most 13 digits; anything else is seconds.
    #[default]
    OpentsdbMask,
    /// KairosDB `put`: below 3,000,000,000 is seconds, else milliseconds.
    Kairosdb,
    /// Telegraf's opentsdb parser: below 1e12 is seconds, else milliseconds.
    Telegraf,
    /// InfluxDB 1.x opentsdb service: 10 digits are seconds, 13 are
    /// milliseconds, any other length is rejected.
    Digits,
    /// Always seconds.
    Seconds,
    /// Always milliseconds.
    Millis,
}

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Zero or negative where only positive times are valid.
    #[error("timestamp must be positive")]
    NotPositive,
    /// More digits than the rule allows.
    #[error("timestamp out of range")]
    OutOfRange,
    /// A length the `digits` rule does not know.
    #[error("timestamp must have 10 or 13 digits")]
    BadLength,
}

impl SecondsOrMillis {
    /// Classify a positive integer timestamp as seconds or milliseconds.
    ///
    /// # Errors
    /// [`TimestampError`] when the rule rejects the value.
    pub fn classify(self, ts: i64) -> Result<Precision, TimestampError> {
        if ts <= 0 {
            return Err(TimestampError::NotPositive);
        }
        match self {
            SecondsOrMillis::OpentsdbMask => {
                if (ts as u64) & 0xFFFF_FFFF_0000_0000 != 0 {
                    if ts > 9_999_999_999_999 {
                        Err(TimestampError::OutOfRange)
                    } else {
                        Ok(Precision::Ms)
                    }
                } else {
                    Ok(Precision::S)
                }
            }
            SecondsOrMillis::Kairosdb => Ok(if ts < 3_000_000_000 {
                Precision::S
            } else {
                Precision::Ms
            }),
            SecondsOrMillis::Telegraf => Ok(if ts < 1_000_000_000_000 {
                Precision::S
            } else {
                Precision::Ms
            }),
            SecondsOrMillis::Digits => match ts.checked_ilog10().map(|d| d + 1) {
                Some(10) => Ok(Precision::S),
                Some(13) => Ok(Precision::Ms),
                _ => Err(TimestampError::BadLength),
            },
            SecondsOrMillis::Seconds => Ok(Precision::S),
            SecondsOrMillis::Millis => Ok(Precision::Ms),
        }
    }

    /// Classify and convert to nanoseconds.
    ///
    /// # Errors
    /// As [`SecondsOrMillis::classify`], or [`TimestampError::OutOfRange`] on overflow.
    pub fn to_ns(self, ts: i64) -> Result<i64, TimestampError> {
        self.classify(ts)?
            .to_ns(ts)
            .ok_or(TimestampError::OutOfRange)
    }
}

/// Parse a Go-style duration (`1ns`, `10us`, `1µs`, `1ms`, `1.5s`, `1m30s`, `2h`).
/// Used where a setting copies Telegraf's, such as `json_timestamp_units`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += num * unit;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// The largest power of ten of nanoseconds that is not above `d` (at least 1 ns):
/// how Telegraf's JSON serializer rounds `json_timestamp_units`.
pub fn power_of_ten_units(d: Duration) -> i64 {
    let target = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let mut unit: i64 = 1;
    while let Some(next) = unit.checked_mul(10) {
        if next > target {
            break;
        }
        unit = next;
    }
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_precision_name() {
        for (s, p) in [
            ("n", Precision::Ns),
            ("ns", Precision::Ns),
            ("u", Precision::Us),
            ("us", Precision::Us),
            ("µ", Precision::Us),
            ("ms", Precision::Ms),
            ("s", Precision::S),
            ("m", Precision::M),
            ("h", Precision::H),
        ] {
            assert_eq!(Precision::parse(s), Some(p), "{s}");
        }
        assert_eq!(Precision::parse("x"), None);
        assert_eq!(Precision::parse("sec"), None);
    }

    #[test]
    fn converts_with_overflow_check() {
        assert_eq!(
            Precision::S.to_ns(1_700_000_000),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(Precision::H.to_ns(2), Some(7_200_000_000_000));
        assert_eq!(Precision::S.to_ns(i64::MAX / 10), None);
        assert_eq!(Precision::S.from_ns(-1_500_000_000), -1);
    }

    #[test]
    fn opentsdb_mask_boundaries() {
        let r = SecondsOrMillis::OpentsdbMask;
        assert_eq!(r.classify(4_294_967_295), Ok(Precision::S));
        assert_eq!(r.classify(4_294_967_296), Ok(Precision::Ms));
        assert_eq!(r.classify(9_999_999_999_999), Ok(Precision::Ms));
        assert_eq!(
            r.classify(10_000_000_000_000),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(r.classify(0), Err(TimestampError::NotPositive));
        assert_eq!(r.classify(-5), Err(TimestampError::NotPositive));
    }

    #[test]
    fn kairosdb_and_telegraf_boundaries() {
        let k = SecondsOrMillis::Kairosdb;
        assert_eq!(k.classify(2_999_999_999), Ok(Precision::S));
        assert_eq!(k.classify(3_000_000_000), Ok(Precision::Ms));
        let t = SecondsOrMillis::Telegraf;
        assert_eq!(t.classify(999_999_999_999), Ok(Precision::S));
        assert_eq!(t.classify(1_000_000_000_000), Ok(Precision::Ms));
    }

    #[test]
    fn digits_rule() {
        let d = SecondsOrMillis::Digits;
        assert_eq!(d.classify(999_999_999), Err(TimestampError::BadLength));
        assert_eq!(d.classify(1_000_000_000), Ok(Precision::S));
        assert_eq!(d.classify(9_999_999_999), Ok(Precision::S));
        assert_eq!(d.classify(10_000_000_000), Err(TimestampError::BadLength));
        assert_eq!(d.classify(1_000_000_000_000), Ok(Precision::Ms));
        assert_eq!(
            d.classify(10_000_000_000_000),
            Err(TimestampError::BadLength)
        );
        assert_eq!(d.to_ns(1_700_000_000_123), Ok(1_700_000_000_123_000_000));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1ns"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_go_duration("1us"), Some(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("1µs"), Some(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("10ms"), Some(Duration::from_millis(10)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("1d"), None);
    }

    #[test]
    fn units_round_down_to_a_power_of_ten() {
        assert_eq!(power_of_ten_units(Duration::from_nanos(1)), 1);
        assert_eq!(power_of_ten_units(Duration::from_millis(1)), 1_000_000);
        assert_eq!(power_of_ten_units(Duration::from_millis(15)), 10_000_000);
        assert_eq!(power_of_ten_units(Duration::from_secs(1)), 1_000_000_000);
        assert_eq!(power_of_ten_units(Duration::from_secs(60)), 10_000_000_000);
        assert_eq!(power_of_ten_units(Duration::ZERO), 1);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ns() > 1_577_836_800_000_000_000);
    }
}
