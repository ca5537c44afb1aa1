//! Per-object errors: a fixed set of kinds (counter labels) and KairosDB's
//! wording, built the way `DataPointsParser` builds it: a context such as
//! `metric[0](name=m)` followed by the attribute and the rule.

use std::fmt::Write as _;

pub use conflux_core::quote::QUOTE_BYTES;

/// One problem found in a body.
///
/// `message` is KairosDB's own text where KairosDB has one
/// (`metric[0](name=m).tags count must be greater than or equal to 1.`);
/// where KairosDB would fail the whole request with a Gson exception or a 500
/// (a tag value that is an object, a timestamp that is not a number), Conflux
/// rejects only that object or data point, with a message in the same shape
/// (`metric[0](name=m).timestamp is an invalid type`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// 0-based index of the metric object in the body; `None` for a syntax
    /// error that is not inside an object.
    pub object: Option<usize>,
    /// Why, as one of a fixed set (see [`ErrorKind::reason`]).
    pub kind: ErrorKind,
    /// The message a client sees in `{"errors":[…]}`.
    pub message: String,
}

/// Why an object or a data point was rejected. A fixed set, so that it can
/// label a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The body is not JSON, stops early, or has something after the end:
    /// `Invalid json. No content due to end of input.`, `Invalid start of json.`,
    /// or the JSON reader's own message.
    InvalidJson,
    /// `name` absent, null or empty.
    MissingName,
    /// No tags: `tags count must be greater than or equal to 1.`
    MissingTags,
    /// A tag with an empty or null name or value, or a repeated tag name.
    InvalidTag,
    /// A value without a timestamp, a null data point timestamp, an empty data point.
    MissingTimestamp,
    /// A timestamp without a value, or a null, empty or `[]` value.
    MissingValue,
    /// A value or attribute of a type that cannot be used
    /// (`metric[0](name=m) value is an invalid type`).
    InvalidType,
    /// A `type` other than `long`, `double` or `string`:
    /// `Unregistered data point type 'x'`.
    UnregisteredType,
    /// A millisecond timestamp outside what nanoseconds in an i64 hold
    /// (1677-09-21 to 2262-04-11).
    TimestampOutOfRange,
    /// A negative `ttl`.
    InvalidTtl,
    /// More tags than the listener's `max_tags_per_metric`:
    /// `tags count must be less than or equal to N.` (the object stores nothing).
    TooManyTags,
    /// A series key (`name,k=v,…`) longer than the listener's
    /// `max_series_key_bytes`: `series key length must be less than or equal
    /// to N bytes.` (the object stores nothing).
    SeriesKeyTooLong,
    /// The batch arena would pass 4 GiB.
    BatchTooLarge,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::InvalidJson,
        ErrorKind::MissingName,
        ErrorKind::MissingTags,
        ErrorKind::InvalidTag,
        ErrorKind::MissingTimestamp,
        ErrorKind::MissingValue,
        ErrorKind::InvalidType,
        ErrorKind::UnregisteredType,
        ErrorKind::TimestampOutOfRange,
        ErrorKind::InvalidTtl,
        ErrorKind::TooManyTags,
        ErrorKind::SeriesKeyTooLong,
        ErrorKind::BatchTooLarge,
    ];

    /// A short snake_case label for counters (`conflux_listener_rejected_total{reason=…}`).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::MissingName => "missing_name",
            ErrorKind::MissingTags => "missing_tags",
            ErrorKind::InvalidTag => "invalid_tag",
            ErrorKind::MissingTimestamp => "missing_timestamp",
            ErrorKind::MissingValue => "missing_value",
            ErrorKind::InvalidType => "invalid_type",
            ErrorKind::UnregisteredType => "unregistered_type",
            ErrorKind::TimestampOutOfRange => "timestamp_out_of_range",
            ErrorKind::InvalidTtl => "invalid_ttl",
            ErrorKind::TooManyTags => "too_many_tags",
            ErrorKind::SeriesKeyTooLong => "series_key_too_long",
            ErrorKind::BatchTooLarge => "batch_too_large",
        }
    }

    /// Position in [`ErrorKind::ALL`], for per-kind count arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// At most [`QUOTE_BYTES`] of `s`, cut on a character boundary.
pub(crate) fn clip(s: &str) -> &str {
    conflux_core::quote::clip(s, QUOTE_BYTES)
}

/// KairosDB's context of a metric object: `metric[N]`, then `(name=…)` once
/// the name is known to be valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub index: usize,
    pub name: Option<&'a str>,
}

impl Context<'_> {
    /// `metric[N](name=…)` into `out`.
    pub fn write(&self, out: &mut String) {
        let _ = write!(out, "metric[{}]", self.index);
        if let Some(n) = self.name {
            out.push_str("(name=");
            out.push_str(clip(n));
            out.push(')');
        }
    }

    /// `<context>.<attribute><rest>`, e.g. `metric[0].name may not be empty.`
    pub fn attr(&self, attribute: &str, rest: &str) -> String {
        let mut s = String::with_capacity(32 + attribute.len() + rest.len());
        self.write(&mut s);
        s.push('.');
        s.push_str(attribute);
        s.push_str(rest);
        s
    }

    /// `<context>.tag[<name or index>].<attribute><rest>`.
    pub fn tag(&self, tag: TagRef<'_>, attribute: &str, rest: &str) -> String {
        let mut s = String::with_capacity(48 + rest.len());
        self.write(&mut s);
        s.push_str(".tag[");
        match tag {
            TagRef::Index(i) => {
                let _ = write!(s, "{i}");
            }
            TagRef::Name(n) => s.push_str(clip(n)),
        }
        s.push(']');
        if !attribute.is_empty() {
            s.push('.');
            s.push_str(attribute);
        }
        s.push_str(rest);
        s
    }

    /// `<context>.datapoints[<i>]<.attribute><rest>`.
    pub fn datapoint(&self, i: usize, attribute: &str, rest: &str) -> String {
        let mut s = String::with_capacity(48 + rest.len());
        self.write(&mut s);
        let _ = write!(s, ".datapoints[{i}]");
        if !attribute.is_empty() {
            s.push('.');
            s.push_str(attribute);
        }
        s.push_str(rest);
        s
    }

    /// `<context> value is an invalid type`: KairosDB's own message, with a
    /// space where the others have a dot.
    pub fn value_invalid_type(&self) -> String {
        let mut s = String::with_capacity(48);
        self.write(&mut s);
        s.push_str(" value is an invalid type");
        s
    }
}

/// How a tag is named in a message: by position until its name is known to
/// be valid, then by name (KairosDB's `SubContext`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum TagRef<'a> {
    Index(usize),
    Name(&'a str),
}

/// `Unregistered data point type '<type>'` (no context, no period: KairosDB's text).
pub(crate) fn unregistered(kind: &str) -> String {
    format!("Unregistered data point type '{}'", clip(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label_and_index() {
        let mut labels: Vec<_> = ErrorKind::ALL.iter().map(|k| k.reason()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn contexts_read_like_kairosdb() {
        let c = Context {
            index: 0,
            name: None,
        };
        assert_eq!(
            c.attr("name", " may not be empty."),
            "metric[0].name may not be empty."
        );
        let c = Context {
            index: 3,
            name: Some("m"),
        };
        assert_eq!(
            c.attr("tags count", " must be greater than or equal to 1."),
            "metric[3](name=m).tags count must be greater than or equal to 1."
        );
        assert_eq!(
            c.tag(TagRef::Index(0), "name", " may not be empty."),
            "metric[3](name=m).tag[0].name may not be empty."
        );
        assert_eq!(
            c.tag(TagRef::Name("foo"), "value", " may not be empty."),
            "metric[3](name=m).tag[foo].value may not be empty."
        );
        assert_eq!(
            c.datapoint(1, "timestamp", " cannot be null or empty."),
            "metric[3](name=m).datapoints[1].timestamp cannot be null or empty."
        );
        assert_eq!(
            c.value_invalid_type(),
            "metric[3](name=m) value is an invalid type"
        );
        assert_eq!(unregistered("x"), "Unregistered data point type 'x'");
    }

    #[test]
    fn quotes_at_most_64_bytes_on_a_char_boundary() {
        let long = "é".repeat(100);
        let c = Context {
            index: 0,
            name: Some(&long),
        };
        let m = c.attr("value", " may not be null.");
        let quoted = &m["metric[0](name=".len()..m.find(')').unwrap()];
        assert!(quoted.len() <= QUOTE_BYTES && quoted.len() >= QUOTE_BYTES - 1);
        assert!(long.starts_with(quoted));
    }
}
