//! Per-line (and per-pickle-item) errors: a fixed set of kinds, usable as
//! counter labels, and messages that quote at most 64 bytes of the input.

pub use conflux_core::quote::QUOTE_BYTES;

/// One line (plaintext) or one item (pickle) that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LineError {
    /// 1-based line number in the payload (plaintext), or 1-based position
    /// of the item in the pickled list (pickle).
    pub line: usize,
    /// `unable to parse '<at most 64 bytes of the line>': <reason>`, or for a
    /// pickle item `item <n>: <reason>`.
    pub message: String,
    /// Why, as one of a fixed set (see [`ErrorKind::reason`]).
    pub kind: ErrorKind,
}

/// A pickle frame that could not be loaded at all: nothing in it is used
/// (carbon logs such a frame and ignores it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pickle at byte {offset}: {message}")]
pub struct PickleError {
    /// Offset of the opcode where decoding stopped.
    pub offset: usize,
    /// What went wrong, naming the opcode where one is at fault.
    pub message: String,
    /// [`ErrorKind::ForbiddenOpcode`], [`ErrorKind::InvalidPickle`] or
    /// [`ErrorKind::NotAList`].
    pub kind: ErrorKind,
}

/// Why a line or item was rejected. A fixed set, so that it can label a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A path and nothing else on the line.
    MissingValue,
    /// More than `path value timestamp` on the line (a path with blanks).
    TooManyFields,
    /// The value is not a number.
    InvalidValue,
    /// The value is NaN: dropped, as carbon filters NaN silently.
    NanValue,
    /// The timestamp is not a number (nor `N`).
    InvalidTimestamp,
    /// The timestamp is infinite or outside 1677-09-21..2262-04-11.
    TimestampOutOfRange,
    /// The path is empty, or its name part is (`;k=v`, `{k="v"}`, or only `~`).
    MissingName,
    /// A tag segment without `=`, with an empty key or an empty value.
    InvalidTag,
    /// A tag key holding one of `!` `^` (carbon's rule; `;` and `=` cannot occur).
    InvalidTagKey,
    /// A tag value starting with `~` (carbon's rule).
    InvalidTagValue,
    /// A `name{k="v",…}` path that does not follow the OpenMetrics form.
    InvalidOpenMetrics,
    /// The path is not valid UTF-8 (carbon decodes lines as UTF-8).
    InvalidUtf8,
    /// More tags (path and template ones, once merged) than the listener's
    /// `max_tags_per_metric`.
    TooManyTags,
    /// A series key (name and tags, `name,k=v,…`) longer than the
    /// listener's `max_series_key_bytes`.
    SeriesKeyTooLong,
    /// The batch arena would pass 4 GiB.
    BatchTooLarge,
    /// A pickle item that is not `(path, (timestamp, value))`.
    InvalidItem,
    /// A pickle opcode that would import or call something (`GLOBAL`,
    /// `REDUCE`, `BUILD`, `INST`, `OBJ`, `NEWOBJ`, `STACK_GLOBAL`, …).
    ForbiddenOpcode,
    /// A pickle that does not load: truncated, unknown opcode, stack or memo errors.
    InvalidPickle,
    /// A pickle that loads, but to something other than a list or tuple.
    NotAList,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::MissingValue,
        ErrorKind::TooManyFields,
        ErrorKind::InvalidValue,
        ErrorKind::NanValue,
        ErrorKind::InvalidTimestamp,
        ErrorKind::TimestampOutOfRange,
        ErrorKind::MissingName,
        ErrorKind::InvalidTag,
        ErrorKind::InvalidTagKey,
        ErrorKind::InvalidTagValue,
        ErrorKind::InvalidOpenMetrics,
        ErrorKind::InvalidUtf8,
        ErrorKind::TooManyTags,
        ErrorKind::SeriesKeyTooLong,
        ErrorKind::BatchTooLarge,
        ErrorKind::InvalidItem,
        ErrorKind::ForbiddenOpcode,
        ErrorKind::InvalidPickle,
        ErrorKind::NotAList,
    ];

    /// A short snake_case label for counters (`conflux_listener_rejected_total{reason=…}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ErrorKind::MissingValue => "missing_value",
            ErrorKind::TooManyFields => "too_many_fields",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::NanValue => "nan_value",
            ErrorKind::InvalidTimestamp => "invalid_timestamp",
            ErrorKind::TimestampOutOfRange => "timestamp_out_of_range",
            ErrorKind::MissingName => "missing_name",
            ErrorKind::InvalidTag => "invalid_tag",
            ErrorKind::InvalidTagKey => "invalid_tag_key",
            ErrorKind::InvalidTagValue => "invalid_tag_value",
            ErrorKind::InvalidOpenMetrics => "invalid_openmetrics",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::TooManyTags => "too_many_tags",
            ErrorKind::SeriesKeyTooLong => "series_key_too_long",
            ErrorKind::BatchTooLarge => "batch_too_large",
            ErrorKind::InvalidItem => "invalid_item",
            ErrorKind::ForbiddenOpcode => "forbidden_opcode",
            ErrorKind::InvalidPickle => "invalid_pickle",
            ErrorKind::NotAList => "not_a_list",
        }
    }

    /// The reason text when nothing more specific is said.
    pub(crate) fn text(self) -> &'static str {
        match self {
            ErrorKind::MissingValue => "missing value",
            ErrorKind::TooManyFields => "too many fields: want `path value [timestamp]`",
            ErrorKind::InvalidValue => "value is not a number",
            ErrorKind::NanValue => "value is NaN",
            ErrorKind::InvalidTimestamp => "timestamp is not a number",
            ErrorKind::TimestampOutOfRange => "timestamp out of range",
            ErrorKind::MissingName => "missing metric name",
            ErrorKind::InvalidTag => "invalid tag: want non-empty `key=value`",
            ErrorKind::InvalidTagKey => "invalid tag key: must not contain `!` or `^`",
            ErrorKind::InvalidTagValue => "invalid tag value: must not start with `~`",
            ErrorKind::InvalidOpenMetrics => "invalid tags: want `name{key=\"value\",…}`",
            ErrorKind::InvalidUtf8 => "invalid utf-8",
            ErrorKind::TooManyTags => "too many tags",
            ErrorKind::SeriesKeyTooLong => "series key too long",
            ErrorKind::BatchTooLarge => "batch too large",
            ErrorKind::InvalidItem => "not a (path, (timestamp, value)) tuple",
            ErrorKind::ForbiddenOpcode => "forbidden opcode",
            ErrorKind::InvalidPickle => "invalid pickle",
            ErrorKind::NotAList => "the pickle is not a list of datapoints",
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
    fn every_kind_has_a_distinct_snake_case_label() {
        let mut labels: Vec<_> = ErrorKind::ALL.iter().map(|k| k.reason()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        assert!(labels.iter().all(|l| {
            l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
    }

    #[test]
    fn texts_are_lowercase_without_trailing_period() {
        for k in ErrorKind::ALL {
            let t = k.text();
            assert!(!t.ends_with('.'), "{t}");
            assert!(!t.starts_with(|c: char| c.is_ascii_uppercase()), "{t}");
        }
    }
}
