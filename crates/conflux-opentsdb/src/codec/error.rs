//! Refusals: a fixed set of kinds (counter labels) and OpenTSDB's wording.

pub use conflux_core::quote::QUOTE_BYTES;
pub(crate) use conflux_core::quote::{clip, clip_bytes};

/// One telnet line that was refused.
///
/// `message` is the line written back to the client (without its `\n`), in
/// OpenTSDB's words (`put: illegal argument: invalid tag: x`, `put: invalid
/// value: …`, ``unknown command: x.  Try `help'.``), quoting at most
/// [`QUOTE_BYTES`] bytes of input per piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based number of the line in the input handed to the parser.
    pub line: usize,
    /// The reply line, without its newline.
    pub message: String,
    /// Why, as one of a fixed set (see [`ErrorKind::reason`]).
    pub kind: ErrorKind,
}

/// One `/api/put` data point that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data point {index}: {message}")]
pub struct PointError {
    /// 0-based position of the point in the body (0 for a single object).
    pub index: usize,
    /// OpenTSDB's per-point error text (`Unable to parse value to a number`,
    /// `Missing tags`, …), as the `details` answer lists it.
    pub message: String,
    /// Why, as one of a fixed set.
    pub kind: ErrorKind,
    /// The point as OpenTSDB echoes it in a `details` answer (a JSON object,
    /// or `null`); only filled when asked for.
    pub datapoint: Option<String>,
}

/// Why a line or a point was refused. A fixed set, so that it can label a
/// counter (`conflux_listener_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Fewer words than `put <metric> <timestamp> <value>` (and a tag, when
    /// tags are required).
    NotEnoughArguments,
    /// `/api/put`: no `metric`, or an empty one.
    MissingMetric,
    /// A timestamp that is not a number, zero or negative, or outside the rule.
    InvalidTimestamp,
    /// `/api/put`: no `value`, `null` or `""`.
    MissingValue,
    /// A value that is not a number (NaN and infinities included).
    InvalidValue,
    /// A tag without exactly one `=` or with an empty side.
    InvalidTag,
    /// The same tag key twice with different values.
    DuplicateTag,
    /// More tags than the listener allows: its OpenTSDB rule (`max_tags`,
    /// `Too many tags: …`) or, past that, its `max_tags_per_metric`
    /// (`too many tags (max N)`).
    TooManyTags,
    /// No tags where the listener requires them.
    MissingTags,
    /// A character outside the allowed set in a name, tag key or tag value.
    InvalidCharacter,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// A telnet command Conflux does not serve.
    UnknownCommand,
    /// `/api/put`: a `null` element in the array.
    NullDatapoint,
    /// `/api/put`: the body is not JSON of the expected shape (the whole body
    /// is refused).
    InvalidJson,
    /// A series key (`metric,k=v,…`) longer than the listener's
    /// `max_series_key_bytes`: `series key too long (max N bytes)`.
    SeriesKeyTooLong,
    /// The batch arena would pass 4 GiB.
    BatchTooLarge,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::NotEnoughArguments,
        ErrorKind::MissingMetric,
        ErrorKind::InvalidTimestamp,
        ErrorKind::MissingValue,
        ErrorKind::InvalidValue,
        ErrorKind::InvalidTag,
        ErrorKind::DuplicateTag,
        ErrorKind::TooManyTags,
        ErrorKind::MissingTags,
        ErrorKind::InvalidCharacter,
        ErrorKind::InvalidUtf8,
        ErrorKind::UnknownCommand,
        ErrorKind::NullDatapoint,
        ErrorKind::InvalidJson,
        ErrorKind::SeriesKeyTooLong,
        ErrorKind::BatchTooLarge,
    ];

    /// A short snake_case label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            ErrorKind::NotEnoughArguments => "not_enough_arguments",
            ErrorKind::MissingMetric => "missing_metric",
            ErrorKind::InvalidTimestamp => "invalid_timestamp",
            ErrorKind::MissingValue => "missing_value",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::InvalidTag => "invalid_tag",
            ErrorKind::DuplicateTag => "duplicate_tag",
            ErrorKind::TooManyTags => "too_many_tags",
            ErrorKind::MissingTags => "missing_tags",
            ErrorKind::InvalidCharacter => "invalid_character",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::UnknownCommand => "unknown_command",
            ErrorKind::NullDatapoint => "null_datapoint",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::SeriesKeyTooLong => "series_key_too_long",
            ErrorKind::BatchTooLarge => "batch_too_large",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
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
