use super::*;
use conflux_core::time::SecondsOrMillis;
use conflux_core::{FieldValue, Metric};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const T: i64 = 1_700_000_000;

/// The kept points, the refused ones and the total.
type Out = (Vec<Metric>, Vec<PointError>, usize);

fn put_with(opts: &ParseOptions, body: &str) -> Result<Out, JsonError> {
    parse_put(body.as_bytes(), opts, true).map(|p| {
        (
            p.batch.iter().map(|m| m.to_metric()).collect(),
            p.errors,
            p.total,
        )
    })
}

fn put(body: &str) -> Result<Out, JsonError> {
    put_with(&ParseOptions::default(), body)
}

fn p(name: &str, ts_ns: i64, value: impl Into<FieldValue>, tags: &[(&str, &str)]) -> Metric {
    let mut m = Metric::new(name).field("value", value).at(ts_ns);
    for (k, v) in tags {
        m = m.tag(*k, *v);
    }
    m
}

/// `body` holds one point, refused with `message` and `kind`.
#[track_caller]
fn bad(body: &str, message: &str, kind: ErrorKind) {
    let (got, errors, total) = put(body).unwrap();
    assert!(got.is_empty(), "{body}: {got:?}");
    assert_eq!(total, 1);
    assert_eq!(errors.len(), 1, "{body}: {errors:?}");
    assert_eq!(errors[0].message, message, "{body}");
    assert_eq!(errors[0].kind, kind, "{body}");
}

#[test]
fn reads_one_object() {
    let (got, errors, total) =
        put(r#"{"metric":"sys.cpu.nice","timestamp":1346846400,"value":18,"tags":{"host":"web01","dc":"lga"}}"#)
            .unwrap();
    assert!(errors.is_empty());
    assert_eq!(total, 1);
    assert_eq!(
        got,
        vec![p(
            "sys.cpu.nice",
            1_346_846_400 * S,
            18i64,
            &[("dc", "lga"), ("host", "web01")]
        )]
    );
}

#[test]
fn reads_an_array_and_keeps_good_points() {
    let body = r#" [
        {"metric":"a","timestamp":1700000000,"value":1.5,"tags":{"h":"x"}},
        {"metric":"b","timestamp":1700000000,"value":"NaN","tags":{"h":"x"}},
        {"metric":"c","timestamp":1700000000123,"value":"-7","tags":{"h":"x"},"extra":[1,{"y":2}]}
    ] "#;
    let (got, errors, total) = put(body).unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        got,
        vec![
            p("a", T * S, 1.5, &[("h", "x")]),
            p("c", 1_700_000_000_123 * MS, -7i64, &[("h", "x")]),
        ]
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].index, 1);
    assert_eq!(errors[0].message, "Unable to parse value to a number");
    assert_eq!(
        errors[0].datapoint.as_deref(),
        Some(r#"{"metric":"b","timestamp":1700000000,"value":"NaN","tags":{"h":"x"}}"#)
    );
}

#[test]
fn refuses_bodies_of_the_wrong_shape_whole() {
    assert_eq!(put("").unwrap_err(), JsonError::Empty);
    assert_eq!(put(" \n\t").unwrap_err(), JsonError::Empty);
    assert_eq!(put("[]").unwrap_err(), JsonError::NoDatapoints);
    assert_eq!(put("\"x\"").unwrap_err(), JsonError::NotObjectOrArray);
    assert_eq!(put("put m 1 1").unwrap_err(), JsonError::NotObjectOrArray);
    for body in [
        "[{\"metric\":\"a\"",
        "[{\"metric\":\"a\",\"timestamp\":1,\"value\":1,\"tags\":{\"h\":\"x\"}},]",
        "[1]",
        "{\"metric\":\"a\"} x",
        "{\"metric\":1}",
        "{\"tags\":[\"a\"]}",
        "[{\"metric\":\"a\",\"timestamp\":1700000000,\"value\":1}, 5]",
    ] {
        let e = put(body).unwrap_err();
        assert!(matches!(e, JsonError::Syntax(_)), "{body}: {e:?}");
        assert_eq!(e.to_string(), "Unable to parse the given JSON");
        assert!(!e.details().unwrap_or_default().is_empty());
    }
}

#[test]
fn per_point_errors_use_opentsdb_words_in_its_order() {
    bad(
        r#"{"timestamp":1700000000,"value":1,"tags":{"h":"x"}}"#,
        "Metric name was empty",
        ErrorKind::MissingMetric,
    );
    bad(
        r#"{"metric":"","timestamp":0,"value":1}"#,
        "Metric name was empty",
        ErrorKind::MissingMetric,
    );
    for ts in ["0", "-5", "null", "\"x\"", "true", "-1.5"] {
        bad(
            &format!(r#"{{"metric":"m","timestamp":{ts},"value":1}}"#),
            "Invalid timestamp",
            ErrorKind::InvalidTimestamp,
        );
    }
    bad(
        r#"{"metric":"m","value":1}"#,
        "Invalid timestamp",
        ErrorKind::InvalidTimestamp,
    );
    for v in ["null", "\"\""] {
        bad(
            &format!(r#"{{"metric":"m","timestamp":1700000000,"value":{v}}}"#),
            "Empty value",
            ErrorKind::MissingValue,
        );
    }
    for v in [
        "true",
        "\"1x\"",
        "\"NaN\"",
        "18446744073709551615",
        "\"Infinity\"",
    ] {
        bad(
            &format!(r#"{{"metric":"m","timestamp":1700000000,"value":{v}}}"#),
            "Unable to parse value to a number",
            ErrorKind::InvalidValue,
        );
    }
    bad(
        r#"{"metric":"m","timestamp":1700000000,"value":"1e999"}"#,
        "value is NaN or Infinite: Infinity for metric=m timestamp=1700000000",
        ErrorKind::InvalidValue,
    );
    bad(
        r#"{"metric":"m","timestamp":10000000000000,"value":1}"#,
        "bad timestamp=10000000000000",
        ErrorKind::InvalidTimestamp,
    );
    bad(
        r#"{"metric":"m b","timestamp":1700000000,"value":1}"#,
        "Invalid metric name (\"m b\"): illegal character:  ",
        ErrorKind::InvalidCharacter,
    );
    bad(
        r#"{"metric":"m","timestamp":1700000000,"value":1,"tags":{"h":null}}"#,
        "Invalid tag value with key [h]: null",
        ErrorKind::InvalidCharacter,
    );
    bad(
        r#"[null]"#,
        "Unexpected null datapoint encountered in set.",
        ErrorKind::NullDatapoint,
    );
}

#[test]
fn tags_are_optional_unless_required() {
    let body = r#"{"metric":"m","timestamp":1700000000,"value":1}"#;
    let (got, errors, _) = put(body).unwrap();
    assert!(errors.is_empty());
    assert_eq!(got, vec![p("m", T * S, 1i64, &[])]);
    let opts = ParseOptions {
        require_tags: true,
        ..ParseOptions::default()
    };
    let (got, errors, _) = put_with(&opts, body).unwrap();
    assert!(got.is_empty());
    assert_eq!(errors[0].message, "Missing tags");
    assert_eq!(errors[0].kind, ErrorKind::MissingTags);
    let (_, errors, _) = put_with(
        &opts,
        r#"{"metric":"m","timestamp":1700000000,"value":1,"tags":{}}"#,
    )
    .unwrap();
    assert_eq!(errors[0].message, "Missing tags");
}

#[test]
fn values_and_timestamps_in_every_json_form() {
    let body = r#"[
        {"metric":"a","timestamp":"1700000000","value":"42","tags":{"n":1,"b":true}},
        {"metric":"b","timestamp":1700000000.25,"value":4.2e1},
        {"metric":"c","timestamp":1700000000000,"value":-3},
        {"metric":"d","timestamp":"1700000000.5","value":"2.5"},
        {"metric":"e","timestamp":1.7e9,"value":0}
    ]"#;
    let (got, errors, _) = put(body).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        got,
        vec![
            p("a", T * S, 42i64, &[("b", "true"), ("n", "1")]),
            p("b", T * S + 250 * MS, 42.0, &[]),
            p("c", T * 1000 * MS, -3i64, &[]),
            p("d", T * S + 500 * MS, 2.5, &[]),
            p("e", T * S, 0i64, &[]),
        ]
    );
}

#[test]
fn a_repeated_tag_key_keeps_the_last_value() {
    let (got, errors, _) =
        put(r#"{"metric":"m","timestamp":1700000000,"value":1,"tags":{"h":"a","h":"b"}}"#).unwrap();
    assert!(errors.is_empty());
    assert_eq!(got, vec![p("m", T * S, 1i64, &[("h", "b")])]);
}

#[test]
fn escaped_strings_are_unescaped() {
    let (got, errors, _) = put(
        r#"{"metric":"caf\u00e9.x","timestamp":1700000000,"value":1,"tags":{"h\u00f6st":"w\u00e9b"}}"#,
    )
    .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(got, vec![p("café.x", T * S, 1i64, &[("höst", "wéb")])]);
}

#[test]
fn the_timestamp_rule_applies() {
    let opts = ParseOptions {
        timestamps: SecondsOrMillis::Kairosdb,
        ..ParseOptions::default()
    };
    let (got, _, _) = put_with(
        &opts,
        r#"[{"metric":"m","timestamp":2999999999,"value":1},{"metric":"m","timestamp":3000000000,"value":1}]"#,
    )
    .unwrap();
    assert_eq!(got[0].timestamp, 2_999_999_999 * S);
    assert_eq!(got[1].timestamp, 3_000_000_000 * MS);
}

#[test]
fn echo_only_when_asked() {
    let p = parse_put(
        br#"[{"metric":"m","timestamp":0,"value":1}, null]"#,
        &ParseOptions::default(),
        false,
    )
    .unwrap();
    assert_eq!(p.errors.len(), 2);
    assert!(p.errors.iter().all(|e| e.datapoint.is_none()));
    let p = parse_put(br#"[null]"#, &ParseOptions::default(), true).unwrap();
    assert_eq!(p.errors[0].datapoint.as_deref(), Some("null"));
}

#[test]
fn json_strings_escape_quotes_and_controls() {
    let mut s = String::new();
    json_string("a\"b\\c\n\u{1}é", &mut s);
    assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
}

#[test]
fn points_past_the_batch_limits_are_refused_and_the_others_kept() {
    let opts = ParseOptions {
        max_tags: 1000,
        ..ParseOptions::default()
    };
    let limits = conflux_core::metric::Limits {
        max_tags: 2,
        max_series_key_bytes: 12,
    };
    let body = r#"[
        {"metric":"a","timestamp":1700000000,"value":1,"tags":{"x":"1","y":"2"}},
        {"metric":"b","timestamp":1700000000,"value":2,"tags":{"x":"1","y":"2","z":"3"}},
        {"metric":"c","timestamp":1700000000,"value":3,"tags":{"host":"web012"}},
        {"metric":"d","timestamp":1700000000,"value":4,"tags":{"x":"1","x":"2","y":"3"}}
    ]"#;
    let put = parse_put_with_limits(body.as_bytes(), &opts, limits, false).unwrap();
    assert_eq!(put.total, 4);
    let got: Vec<_> = put.batch.iter().map(|m| m.to_metric()).collect();
    assert_eq!(
        got,
        vec![
            p("a", T * S, 1i64, &[("x", "1"), ("y", "2")]),
            // A repeated key keeps its last value and counts once.
            p("d", T * S, 4i64, &[("x", "2"), ("y", "3")]),
        ]
    );
    let errs: Vec<_> = put
        .errors
        .iter()
        .map(|e| (e.index, e.kind.reason(), e.message.as_str()))
        .collect();
    assert_eq!(
        errs,
        [
            (1, "too_many_tags", "too many tags (max 2)"),
            (
                2,
                "series_key_too_long",
                "series key too long (max 12 bytes)"
            ),
        ]
    );
    assert_eq!(put.batch.limits(), limits);
}

/// Found by `parse_opentsdb` (fuzz): `"tags":{"ha":""}` was stored with an
/// empty value, which OpenTSDB refuses and the telnet form cannot carry.
#[test]
fn empty_tag_names_and_values_are_refused() {
    bad(
        r#"{"metric":"good","timestamp":1700000000,"value":1,"tags":{"ha":""}}"#,
        "Invalid tag value with key [ha]: empty string",
        ErrorKind::InvalidTag,
    );
    bad(
        r#"{"metric":"good","timestamp":1700000000,"value":1,"tags":{"":"a"}}"#,
        "Invalid tag name with value [a]: empty string",
        ErrorKind::InvalidTag,
    );
    let (got, errors, _) = put(
        r#"[{"metric":"good","timestamp":1700000000,"value":1,"tags":{"ha":""}},
           {"metric":"good","timestamp":1700000000,"value":2,"tags":{"h":"a"}}]"#,
    )
    .unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(got, vec![p("good", 1_700_000_000 * S, 2i64, &[("h", "a")])]);
}
