//! Per-line parse errors: a fixed set of kinds (counter labels) and InfluxDB's wording.

use std::borrow::Cow;

pub use conflux_core::quote::QUOTE_BYTES;

/// One line that could not be parsed.
///
/// `message` is InfluxDB's wording, `unable to parse '<line>': <reason>`, with at
/// most [`QUOTE_BYTES`] bytes of the line quoted (cut on a character boundary;
/// invalid UTF-8 is shown as U+FFFD), because Telegraf matches on that shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LineError {
    /// 1-based number of the physical line where the bad line starts.
    pub line: usize,
    /// `unable to parse '<at most 64 bytes of the line>': <reason>`.
    pub message: String,
    /// Why, as one of a fixed set (see [`ErrorKind::reason`]).
    pub kind: ErrorKind,
}

/// Why a line was rejected. A fixed set, so that it can label a counter.
///
/// The default reasons are InfluxDB 2.x's own (`models/points.go`); the kinds
/// after [`ErrorKind::InvalidPoint`] are Conflux's or the storage engine's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The line starts with a comma: `missing measurement`.
    MissingMeasurement,
    /// `m,=v f=1` or `m, f=1`: `missing tag key`.
    MissingTagKey,
    /// `m,t f=1` or `m,t= f=1`: `missing tag value`.
    MissingTagValue,
    /// An unescaped `=` inside a tag value: `invalid tag format`.
    InvalidTagFormat,
    /// The same tag key twice: `duplicate tags`.
    DuplicateTags,
    /// Nothing after the measurement and tags: `missing fields`.
    MissingFields,
    /// `m =1` or `m a=1,=2`: `missing field key`.
    MissingFieldKey,
    /// `m a=` or `m a=,b=1`: `missing field value`.
    MissingFieldValue,
    /// A field without `=`, an empty field, garbage after a string: `invalid field format`.
    InvalidFieldFormat,
    /// A string field without its closing quote: `unbalanced quotes`.
    UnbalancedQuotes,
    /// A malformed number (`1ii`, `1.2.3`, `1.5i`, `-`, `NaN`): `invalid number`.
    InvalidNumber,
    /// A float that does not parse or is out of range (`1e999`, `.e3`): `invalid float`.
    InvalidFloat,
    /// An `i` integer outside the i64 range.
    IntegerOutOfRange,
    /// A `u` integer outside the u64 range.
    UnsignedOutOfRange,
    /// Not one of the ten boolean spellings: `invalid boolean`.
    InvalidBoolean,
    /// A timestamp with a non-digit: `bad timestamp`, or Go's `strconv.ParseInt` error.
    BadTimestamp,
    /// A timestamp outside 1677-09-21..2262-04-11 once scaled to nanoseconds.
    TimestampOutOfRange,
    /// Something other than spaces after the timestamp: `point is invalid`.
    InvalidPoint,
    /// Measurement, tags and a field key longer than the limit: `max key length exceeded`.
    MaxKeyLength,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// A tag named `time` (InfluxDB drops such points).
    InvalidTagKey,
    /// Every field was named `time` (InfluxDB drops such fields, then the empty point).
    InvalidFieldName,
    /// More tags than the listener's `max_tags_per_metric`: `too many tags (max N)`.
    TooManyTags,
    /// A series key (measurement and tags, unescaped) longer than the
    /// listener's `max_series_key_bytes`: `series key too long (max N bytes)`.
    SeriesKeyTooLong,
    /// The batch arena would pass 4 GiB.
    BatchTooLarge,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 25] = [
        ErrorKind::MissingMeasurement,
        ErrorKind::MissingTagKey,
        ErrorKind::MissingTagValue,
        ErrorKind::InvalidTagFormat,
        ErrorKind::DuplicateTags,
        ErrorKind::MissingFields,
        ErrorKind::MissingFieldKey,
        ErrorKind::MissingFieldValue,
        ErrorKind::InvalidFieldFormat,
        ErrorKind::UnbalancedQuotes,
        ErrorKind::InvalidNumber,
        ErrorKind::InvalidFloat,
        ErrorKind::IntegerOutOfRange,
        ErrorKind::UnsignedOutOfRange,
        ErrorKind::InvalidBoolean,
        ErrorKind::BadTimestamp,
        ErrorKind::TimestampOutOfRange,
        ErrorKind::InvalidPoint,
        ErrorKind::MaxKeyLength,
        ErrorKind::InvalidUtf8,
        ErrorKind::InvalidTagKey,
        ErrorKind::InvalidFieldName,
        ErrorKind::TooManyTags,
        ErrorKind::SeriesKeyTooLong,
        ErrorKind::BatchTooLarge,
    ];

    /// A short snake_case label for counters (`conflux_…_rejected_total{reason=…}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ErrorKind::MissingMeasurement => "missing_measurement",
            ErrorKind::MissingTagKey => "missing_tag_key",
            ErrorKind::MissingTagValue => "missing_tag_value",
            ErrorKind::InvalidTagFormat => "invalid_tag_format",
            ErrorKind::DuplicateTags => "duplicate_tags",
            ErrorKind::MissingFields => "missing_fields",
            ErrorKind::MissingFieldKey => "missing_field_key",
            ErrorKind::MissingFieldValue => "missing_field_value",
            ErrorKind::InvalidFieldFormat => "invalid_field_format",
            ErrorKind::UnbalancedQuotes => "unbalanced_quotes",
            ErrorKind::InvalidNumber => "invalid_number",
            ErrorKind::InvalidFloat => "invalid_float",
            ErrorKind::IntegerOutOfRange => "integer_out_of_range",
            ErrorKind::UnsignedOutOfRange => "unsigned_out_of_range",
            ErrorKind::InvalidBoolean => "invalid_boolean",
            ErrorKind::BadTimestamp => "bad_timestamp",
            ErrorKind::TimestampOutOfRange => "timestamp_out_of_range",
            ErrorKind::InvalidPoint => "invalid_point",
            ErrorKind::MaxKeyLength => "max_key_length",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::InvalidTagKey => "invalid_tag_key",
            ErrorKind::InvalidFieldName => "invalid_field_name",
            ErrorKind::TooManyTags => "too_many_tags",
            ErrorKind::SeriesKeyTooLong => "series_key_too_long",
            ErrorKind::BatchTooLarge => "batch_too_large",
        }
    }

    /// The reason text when nothing from the line goes into it.
    pub(crate) fn text(self) -> &'static str {
        match self {
            ErrorKind::MissingMeasurement => "missing measurement",
            ErrorKind::MissingTagKey => "missing tag key",
            ErrorKind::MissingTagValue => "missing tag value",
            ErrorKind::InvalidTagFormat => "invalid tag format",
            ErrorKind::DuplicateTags => "duplicate tags",
            ErrorKind::MissingFields => "missing fields",
            ErrorKind::MissingFieldKey => "missing field key",
            ErrorKind::MissingFieldValue => "missing field value",
            ErrorKind::InvalidFieldFormat => "invalid field format",
            ErrorKind::UnbalancedQuotes => "unbalanced quotes",
            ErrorKind::InvalidNumber => "invalid number",
            ErrorKind::InvalidFloat => "invalid float",
            ErrorKind::IntegerOutOfRange => "integer out of range",
            ErrorKind::UnsignedOutOfRange => "unsigned out of range",
            ErrorKind::InvalidBoolean => "invalid boolean",
            ErrorKind::BadTimestamp => "bad timestamp",
            ErrorKind::TimestampOutOfRange => {
                "time outside range -9223372036854775806 - 9223372036854775806"
            }
            ErrorKind::InvalidPoint => "point is invalid",
            ErrorKind::MaxKeyLength => "max key length exceeded",
            ErrorKind::InvalidUtf8 => "invalid utf-8",
            ErrorKind::InvalidTagKey => "invalid tag key: input tag \"time\" is invalid",
            ErrorKind::InvalidFieldName => "invalid field name: input field \"time\" is invalid",
            ErrorKind::TooManyTags => "too many tags",
            ErrorKind::SeriesKeyTooLong => "series key too long",
            ErrorKind::BatchTooLarge => "batch too large",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// An error found while reading a line: its kind and the reason text (which may
/// hold a clipped piece of the input, as Go's integer errors do).
#[derive(Debug)]
pub(crate) struct Fail {
    pub kind: ErrorKind,
    pub reason: Cow<'static, str>,
}

impl From<ErrorKind> for Fail {
    fn from(kind: ErrorKind) -> Self {
        Fail {
            kind,
            reason: Cow::Borrowed(kind.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label() {
        let mut labels: Vec<_> = ErrorKind::ALL.iter().map(|k| k.reason()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        assert!(labels.iter().all(|l| {
            l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
    }
}
