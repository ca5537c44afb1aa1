//! Parser cases. The first group are the cases of KairosDB's own
//! `DataPointsParserTest.java` (same bodies, same messages), then Conflux's.

use conflux_core::Batch;

use super::*;

fn run_with(input: &str, opts: &ParseOptions) -> (Vec<String>, Vec<ParseError>, Summary) {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let summary = parse(input.as_bytes(), opts, &mut batch, &mut errors);
    assert_eq!(summary.metrics, batch.len());
    assert_eq!(summary.errors, summary.by_kind.iter().sum::<usize>());
    (dump(&batch), errors, summary)
}

fn run(input: &str) -> (Vec<String>, Vec<ParseError>, Summary) {
    run_with(input, &ParseOptions::default())
}

/// One line per metric: `name tags value timestamp_ns [ttl=N]`.
fn dump(b: &Batch) -> Vec<String> {
    b.iter()
        .map(|m| {
            let tags: Vec<String> = m.tags().map(|(k, v)| format!("{k}={v}")).collect();
            let fields: Vec<String> = m.fields().map(|(k, v)| format!("{k}:{v:?}")).collect();
            let ttl = m.ttl().map(|t| format!(" ttl={t}")).unwrap_or_default();
            format!(
                "{} {} {} {}{ttl}",
                m.name(),
                tags.join(","),
                fields.join(","),
                m.timestamp()
            )
        })
        .collect()
}

/// `input` parses without errors into exactly `expected`.
#[track_caller]
fn ok(input: &str, expected: &[&str]) {
    let (got, errors, _) = run(input);
    assert!(errors.is_empty(), "{input}: {errors:?}");
    assert_eq!(got, expected, "{input}");
}

/// `input` gives exactly the error `messages` (and keeps `kept` metrics).
#[track_caller]
fn err(input: &str, messages: &[&str], kept: usize) {
    let (got, errors, _) = run(input);
    let msgs: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, messages, "{input}");
    assert_eq!(got.len(), kept, "{input}: {got:?}");
}

const TAGS: &str = r#""tags":{"foo":"bar"}"#;

// ---- KairosDB's DataPointsParserTest, case by case ----

#[test]
fn empty_body_is_end_of_input() {
    err("", &["Invalid json. No content due to end of input."], 0);
    err(
        " \n\t",
        &["Invalid json. No content due to end of input."],
        0,
    );
}

#[test]
fn null_metric_name_is_reported_and_the_other_object_kept() {
    err(
        r#"[{"name": "metric1", "timestamp": 1234, "value": 456, "datapoints": [[1,2]], "tags":{"foo":"bar"}}, {"datapoints": [[1,2]], "tags":{"foo":"bar"}}]"#,
        &["metric[1].name may not be null."],
        2,
    );
}

#[test]
fn timestamp_without_value() {
    err(
        r#"[{"name": "metric1", "timestamp": 1234, "tags": {"foo":"bar"}}]"#,
        &["metric[0](name=metric1).value may not be null."],
        0,
    );
}

#[test]
fn value_without_timestamp() {
    err(
        r#"[{"name": "metric1", "value": 1234, "tags":{"foo":"bar"}}]"#,
        &["metric[0](name=metric1).timestamp may not be null."],
        0,
    );
}

#[test]
fn zero_and_negative_timestamps_are_valid() {
    ok(
        r#"[{"name": "metric1", "timestamp": 0, "value": 1234, "tags":{"foo":"bar"}}]"#,
        &["metric1 foo=bar value:Int(1234) 0"],
    );
    ok(
        r#"[{"name": "metric1", "timestamp": -1, "value": 1234, "tags":{"foo":"bar"}}]"#,
        &["metric1 foo=bar value:Int(1234) -1000000"],
    );
    ok(
        r#"[{"name": "metric1", "tags":{"foo":"bar"}, "datapoints": [[0,2],[-1,3]]}]"#,
        &[
            "metric1 foo=bar value:Int(2) 0",
            "metric1 foo=bar value:Int(3) -1000000",
        ],
    );
}

#[test]
fn empty_data_point() {
    err(
        r#"[{"name": "metric1", "tags":{"foo":"bar"}, "datapoints": [[]]}]"#,
        &["metric[0](name=metric1).datapoints[0].timestamp cannot be null or empty."],
        0,
    );
    err(
        r#"[{"name": "metric1", "tags":{"foo":"bar"}, "datapoints": [[2]]}]"#,
        &["metric[0](name=metric1).datapoints[0].value cannot be null or empty."],
        0,
    );
}

#[test]
fn null_data_point_parts() {
    // KairosDB's test writes `[[2,]]` and `[[,2]]`, which only Gson's lenient
    // mode reads (as nulls); in JSON they are spelled with `null`.
    err(
        r#"[{"name": "metric1", "tags":{"foo":"bar"}, "datapoints": [[2,null]]}]"#,
        &["metric[0](name=metric1).datapoints[0].value may not be empty."],
        0,
    );
    err(
        r#"[{"name": "metric1", "tags":{"foo":"bar"}, "datapoints": [[null,2]]}]"#,
        &["metric[0](name=metric1).datapoints[0].timestamp may not be null."],
        0,
    );
}

#[test]
fn empty_metric_name() {
    err(
        r#"[{"name": "", "tags":{"foo":"bar"}, "datapoints": [[1,2]]}]"#,
        &["metric[0].name may not be empty."],
        0,
    );
}

#[test]
fn names_and_tags_may_hold_any_character() {
    ok(
        r#"[{"name": "bad:你好name", "tags":{"bad:name":"bad:value"}, "datapoints": [[1,2]]}]"#,
        &["bad:你好name bad:name=bad:value value:Int(2) 1000000"],
    );
}

#[test]
fn no_tags() {
    err(
        r#"[{"name": "metricName", "timestamp": 12345, "value": 456, "datapoints": [[1,2]]}]"#,
        &["metric[0](name=metricName).tags count must be greater than or equal to 1."],
        0,
    );
}

#[test]
fn empty_tag_name_and_value() {
    err(
        r#"[{"name": "metricName", "tags":{"":"bar"}, "datapoints": [[1,2]]}]"#,
        &["metric[0](name=metricName).tag[0].name may not be empty."],
        0,
    );
    err(
        r#"[{"name": "metricName", "tags":{"foo":""}, "datapoints": [[1,2]]}]"#,
        &["metric[0](name=metricName).tag[foo].value may not be empty."],
        0,
    );
}

#[test]
fn several_failures_in_one_object() {
    err(
        r#"[{"name": "metricName", "timestamp": 456, "value":"", "tags":{"name":""}}]"#,
        &[
            "metric[0](name=metricName).value may not be empty.",
            "metric[0](name=metricName).tag[name].value may not be empty.",
        ],
        0,
    );
}

#[test]
fn decimal_string_with_zeros() {
    ok(
        r#"[{"name": "metricName", "tags":{"foo":"bar"}, "datapoints": [[1, "0.000000"]]}]"#,
        &["metricName foo=bar value:Float(0.0) 1000000"],
    );
}

#[test]
fn timestamp_and_value() {
    ok(
        r#"[{"name": "metric1", "timestamp": 1234, "value": 4321, "tags":{"foo":"bar"}}]"#,
        &["metric1 foo=bar value:Int(4321) 1234000000"],
    );
}

#[test]
fn invalid_json_keeps_nothing_of_the_broken_object() {
    let (got, errors, _) = run(r#"[{"name": "metric1", "timestamp": 1234, "value": }]"#);
    assert!(got.is_empty());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::InvalidJson);
    assert_eq!(errors[0].object, Some(0));
    assert_eq!(errors[0].message, "expected value at line 1 column 50");
}

#[test]
fn time_alias_and_data_points_together() {
    ok(
        r#"[{"name": "metric1", "time": 1234, "value": 4321, "datapoints": [[456, 654]], "tags":{"foo":"bar"}}]"#,
        &[
            "metric1 foo=bar value:Int(4321) 1234000000",
            "metric1 foo=bar value:Int(654) 456000000",
        ],
    );
}

#[test]
fn several_metrics_with_data_points() {
    // json-metric-parser-multiple-metric.json
    ok(
        r#"[
  {"name": "archive_file_tracked", "datapoints": [[1349109376, 123], [1349109377, 13.2], [1349109378, 23.1]], "tags": {"host": "server1"}},
  {"name": "archive_file_search", "timestamp": 1349109378, "value": 321, "tags": {"host": "server2", "customer": "Acme"}}
]"#,
        &[
            "archive_file_tracked host=server1 value:Int(123) 1349109376000000",
            "archive_file_tracked host=server1 value:Float(13.2) 1349109377000000",
            "archive_file_tracked host=server1 value:Float(23.1) 1349109378000000",
            "archive_file_search customer=Acme,host=server2 value:Int(321) 1349109378000000",
        ],
    );
}

#[test]
fn explicit_types_per_object_and_per_point() {
    // json-metric-parser-metrics-with-type.json
    ok(
        r#"[
  {"name": "archive_file_tracked", "datapoints": [[1349109376, 123, "long"], [1349109377, 13.2, "double"], [1349109378, 23.1, "double"], [1349109378, "string_data", "string"]], "tags": {"host": "server1"}},
  {"name": "archive_file_search", "type": "long", "time": 1349109378, "value": 321, "tags": {"host": "server2", "customer": "Acme"}},
  {"name": "archive_file_search_text", "type": "string", "time": 1349109378, "value": "sweet", "tags": {"host": "server2", "customer": "Acme"}}
]"#,
        &[
            "archive_file_tracked host=server1 value:Int(123) 1349109376000000",
            "archive_file_tracked host=server1 value:Float(13.2) 1349109377000000",
            "archive_file_tracked host=server1 value:Float(23.1) 1349109378000000",
            "archive_file_tracked host=server1 value:Str(\"string_data\") 1349109378000000",
            "archive_file_search customer=Acme,host=server2 value:Int(321) 1349109378000000",
            "archive_file_search_text customer=Acme,host=server2 value:Str(\"sweet\") 1349109378000000",
        ],
    );
}

#[test]
fn a_single_object_without_array() {
    ok(
        r#"{"name": "metric1", "timestamp": 1234, "value": 4321, "tags":{"foo":"bar"}}"#,
        &["metric1 foo=bar value:Int(4321) 1234000000"],
    );
}

#[test]
fn strings_with_and_without_type() {
    ok(
        r#"{"name": "metric1", "timestamp": 1234, "value": "The Value", "tags":{"foo":"bar"}}"#,
        &["metric1 foo=bar value:Str(\"The Value\") 1234000000"],
    );
    ok(
        r#"{"name": "metric1", "type": "string", "timestamp": 1234, "value": "", "tags":{"foo":"bar"}}"#,
        &["metric1 foo=bar value:Str(\"\") 1234000000"],
    );
    err(
        r#"{"name": "metric1", "timestamp": 1234, "value": "", "tags":{"foo":"bar"}}"#,
        &["metric[0](name=metric1).value may not be empty."],
        0,
    );
    ok(
        r#"[{"name": "metric1","datapoints": [[1234, "The Value"]],"tags": {"foo": "bar"}}]"#,
        &["metric1 foo=bar value:Str(\"The Value\") 1234000000"],
    );
}

#[test]
fn number_strings_become_numbers() {
    ok(
        r#"{"name": "metric1", "timestamp": 1234, "value": "123", "tags":{"foo":"bar"}}"#,
        &["metric1 foo=bar value:Int(123) 1234000000"],
    );
    ok(
        r#"{"name": "metric1", "timestamp": 1234, "value": "123.3", "tags":{"foo":"bar"}}"#,
        &["metric1 foo=bar value:Float(123.3) 1234000000"],
    );
}

#[test]
fn object_values_are_an_invalid_type() {
    err(
        r#"{"name": "metric1", "timestamp": 1234, "value": {}, "tags":{"foo":"bar"}}"#,
        &["metric[0](name=metric1) value is an invalid type"],
        0,
    );
    err(
        r#"{"name": "metric1", "datapoints": [[1349109376, {}]], "tags":{"foo":"bar"}}"#,
        &["metric[0](name=metric1) value is an invalid type"],
        0,
    );
}

// ---- documented example and the rest of KairosDB's rules ----

#[test]
fn the_documented_example_with_an_unregistered_type() {
    // docs/restapi/AddDataPoints.rst: `complex-number` is a custom type a
    // stock KairosDB does not register.
    err(
        r#"[
  {"name": "archive_file_tracked", "datapoints": [[1359788400000, 123], [1359788300000, 13.2], [1359788410000, 23.1]], "tags": {"host": "server1", "data_center": "DC1"}, "ttl": 300},
  {"name": "impedance", "type": "complex-number", "datapoints": [[1359788400000, {"real": 2.3, "imaginary": 3.4}], [1359788300000, {"real": 1.1, "imaginary": 5}]], "tags": {"host": "server1", "data_center": "DC1"}},
  {"name": "archive_file_search", "timestamp": 1359786400000, "value": 321, "tags": {"host": "server2"}}
]"#,
        &[
            "Unregistered data point type 'complex-number'",
            "Unregistered data point type 'complex-number'",
        ],
        4,
    );
    let (got, ..) = run(r#"{"name":"a","ttl":300,"datapoints":[[1,1]],"tags":{"h":"s"}}"#);
    assert_eq!(got, ["a h=s value:Int(1) 1000000 ttl=300"]);
}

#[test]
fn invalid_start_of_json() {
    for body in ["5", "\"x\"", "null", "true", "]"] {
        err(body, &["Invalid start of json."], 0);
    }
}

#[test]
fn truncated_bodies_keep_what_came_before() {
    err(r#"[{"name":"m""#, &[END_OF_INPUT], 0);
    let good = r#"{"name":"m","timestamp":1,"value":1,"tags":{"a":"b"}}"#;
    err(&format!("[{good},"), &[END_OF_INPUT], 1);
    err(&format!("[{good}"), &[END_OF_INPUT], 1);
    let (_, errors, _) = run(&format!("[{good},{good},{{\"name\""));
    assert_eq!(errors[0].object, Some(2));
}

#[test]
fn trailing_characters_are_reported_and_the_data_kept() {
    let (got, errors, _) = run(r#"[{"name":"m","timestamp":1,"value":1,"tags":{"a":"b"}}] [1]"#);
    assert_eq!(got.len(), 1);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::InvalidJson);
    assert!(
        errors[0].message.starts_with("trailing characters"),
        "{errors:?}"
    );
}

#[test]
fn ttl_is_kept_as_metadata() {
    ok(
        &format!(r#"{{"name":"m","timestamp":1,"value":1,{TAGS},"ttl":"300"}}"#),
        &["m foo=bar value:Int(1) 1000000 ttl=300"],
    );
    ok(
        &format!(r#"{{"name":"m","timestamp":1,"value":1,{TAGS},"ttl":0}}"#),
        &["m foo=bar value:Int(1) 1000000"],
    );
    err(
        &format!(r#"{{"name":"m","timestamp":1,"value":1,{TAGS},"ttl":-5}}"#),
        &["metric[0](name=m).ttl must be greater than or equal to 0."],
        0,
    );
    err(
        &format!(r#"{{"name":"m","timestamp":1,"value":1,{TAGS},"ttl":3000000000}}"#),
        &["metric[0](name=m).ttl is an invalid type"],
        0,
    );
}

#[test]
fn skip_validate_and_require_tags_allow_untagged_metrics() {
    ok(
        r#"{"name":"m","timestamp":1,"value":1,"skip_validate":true}"#,
        &["m  value:Int(1) 1000000"],
    );
    let opts = ParseOptions {
        require_tags: false,
        ..ParseOptions::default()
    };
    let (got, errors, _) = run_with(r#"{"name":"m","timestamp":1,"value":1}"#, &opts);
    assert!(errors.is_empty());
    assert_eq!(got, ["m  value:Int(1) 1000000"]);
    // Skipping validation does not make a nameless metric storable.
    err(
        r#"{"timestamp":1,"value":1,"skip_validate":true}"#,
        &["metric[0].name may not be null."],
        0,
    );
}

#[test]
fn value_types() {
    let one = |v: &str, ty: &str| {
        let ty = if ty.is_empty() {
            String::new()
        } else {
            format!(r#","type":"{ty}""#)
        };
        let (got, errors, _) = run(&format!(
            r#"{{"name":"m","timestamp":1,"value":{v}{ty},"tags":{{"a":"b"}}}}"#
        ));
        match errors.first() {
            Some(e) => e.message.clone(),
            None => got[0].split(' ').nth(2).unwrap().to_owned(),
        }
    };
    assert_eq!(one("true", ""), "value:Str(\"true\")");
    assert_eq!(one("-7", ""), "value:Int(-7)");
    assert_eq!(one("1.0", ""), "value:Float(1.0)");
    assert_eq!(one("1e3", ""), "value:Float(1000.0)");
    assert_eq!(
        one("18446744073709551615", ""),
        "value:Float(1.8446744073709552e19)"
    );
    assert_eq!(one("\"+5\"", ""), "value:Int(5)");
    assert_eq!(one("\"-.5\"", ""), "value:Float(-0.5)");
    assert_eq!(one("\"1.2.3\"", ""), "value:Str(\"1.2.3\")");
    assert_eq!(one("\"1e5\"", ""), "value:Str(\"1e5\")");
    assert_eq!(one("1.9", "long"), "value:Int(1)");
    assert_eq!(one("\"-2.5\"", "long"), "value:Int(-2)");
    assert_eq!(one("3", "double"), "value:Float(3.0)");
    assert_eq!(one("\"1e5\"", "double"), "value:Float(100000.0)");
    assert_eq!(one("3", "string"), "value:Str(\"3\")");
    assert_eq!(one("2.5", "string"), "value:Str(\"2.5\")");
    assert_eq!(one("false", "string"), "value:Str(\"false\")");
    assert_eq!(
        one("\"x\"", "long"),
        "metric[0](name=m) value is an invalid type"
    );
    assert_eq!(
        one("true", "double"),
        "metric[0](name=m) value is an invalid type"
    );
    assert_eq!(one("[1]", ""), "metric[0](name=m) value is an invalid type");
    assert_eq!(
        one("[]", ""),
        "metric[0](name=m).value may not be an empty array."
    );
    assert_eq!(one("null", ""), "metric[0](name=m).value may not be empty.");
    assert_eq!(
        one("null", "string"),
        "metric[0](name=m).value may not be null."
    );
    assert_eq!(
        one("1", "histogram"),
        "Unregistered data point type 'histogram'"
    );
    assert_eq!(one("1", "Long"), "Unregistered data point type 'Long'");
}

#[test]
fn timestamps_in_milliseconds_with_kairosdb_coercions() {
    let ts = |t: &str| {
        let (got, errors, _) = run(&format!(
            r#"{{"name":"m","timestamp":{t},"value":1,"tags":{{"a":"b"}}}}"#
        ));
        match errors.first() {
            Some(e) => e.message.clone(),
            None => got[0].rsplit(' ').next().unwrap().to_owned(),
        }
    };
    assert_eq!(ts("1700000000123"), "1700000000123000000");
    assert_eq!(ts("\"1700000000123\""), "1700000000123000000");
    assert_eq!(ts("1.9"), "1000000");
    assert_eq!(ts("9223372036854"), "9223372036854000000");
    assert_eq!(
        ts("9223372036855"),
        "metric[0](name=m).timestamp must be between -9223372036854 and 9223372036854."
    );
    assert_eq!(
        ts("18446744073709551615"),
        "metric[0](name=m).timestamp must be between -9223372036854 and 9223372036854."
    );
    assert_eq!(
        ts("\"soon\""),
        "metric[0](name=m).timestamp is an invalid type"
    );
    assert_eq!(ts("true"), "metric[0](name=m).timestamp is an invalid type");
    // `time` wins over `timestamp`, and names itself in errors.
    let (got, ..) = run(r#"{"name":"m","timestamp":1,"time":2,"value":1,"tags":{"a":"b"}}"#);
    assert_eq!(got, ["m a=b value:Int(1) 2000000"]);
    let (_, errors, _) = run(r#"{"name":"m","time":{},"value":1,"tags":{"a":"b"}}"#);
    assert_eq!(
        errors[0].message,
        "metric[0](name=m).time is an invalid type"
    );
    let (_, errors, _) = run(r#"{"name":"m","datapoints":[[9223372036855,1]],"tags":{"a":"b"}}"#);
    assert_eq!(
        errors[0].message,
        "metric[0](name=m).datapoints[0].timestamp must be between -9223372036854 and 9223372036854."
    );
}

#[test]
fn bad_points_skip_only_themselves() {
    err(
        r#"{"name":"m","tags":{"a":"b"},"datapoints":[[1,1],[2],5,[3,"x","long"],[4,4,"double"],[5,"",null],[6,1,7],["t",1],[7,1,[]]]}"#,
        &[
            "metric[0](name=m).datapoints[1].value cannot be null or empty.",
            "metric[0](name=m).datapoints[2] is an invalid type",
            "metric[0](name=m) value is an invalid type",
            "metric[0](name=m).datapoints[5].value may not be empty.",
            "Unregistered data point type '7'",
            "metric[0](name=m).datapoints[7].timestamp is an invalid type",
            "metric[0](name=m).datapoints[8].type is an invalid type",
        ],
        2,
    );
}

#[test]
fn attributes_of_the_wrong_type_reject_their_object_only() {
    let good = r#"{"name":"ok","timestamp":1,"value":1,"tags":{"a":"b"}}"#;
    let cases = [
        (
            r#"{"name":{},"timestamp":1,"value":1,"tags":{"a":"b"}}"#,
            "metric[0].name is an invalid type",
        ),
        (
            r#"{"name":"m","timestamp":1,"value":1,"tags":[]}"#,
            "metric[0](name=m).tags is an invalid type",
        ),
        (
            r#"{"name":"m","timestamp":1,"value":1,"tags":{"a":{}}}"#,
            "metric[0](name=m).tag[a].value is an invalid type",
        ),
        (
            r#"{"name":"m","timestamp":1,"value":1,"tags":{"a":null}}"#,
            "metric[0](name=m).tag[a].value may not be null.",
        ),
        (
            r#"{"name":"m","datapoints":5,"tags":{"a":"b"}}"#,
            "metric[0](name=m).datapoints is an invalid type",
        ),
        (
            r#"{"name":"m","type":[],"timestamp":1,"value":1,"tags":{"a":"b"}}"#,
            "metric[0](name=m).type is an invalid type",
        ),
        (
            r#"{"name":"m","timestamp":1,"value":1,"skip_validate":5,"tags":{"a":"b"}}"#,
            "metric[0](name=m).skip_validate is an invalid type",
        ),
        (
            r#"{"name":"m","timestamp":1,"value":1,"tags":{"b":"1","a":"2","b":"3"}}"#,
            "metric[0](name=m).tag[b] is a duplicate.",
        ),
        ("7", "metric[0] is an invalid type"),
        ("null", "metric[0] is an invalid type"),
        ("[1,2]", "metric[0] is an invalid type"),
    ];
    for (bad, message) in cases {
        let body = format!("[{bad},{good}]");
        let (got, errors, summary) = run(&body);
        let msgs: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, [message], "{body}");
        assert_eq!(got, ["ok a=b value:Int(1) 1000000"], "{body}");
        assert_eq!(summary.objects, 2, "{body}");
        assert_eq!(errors[0].object, Some(0));
    }
}

#[test]
fn scalars_are_read_as_text_where_kairosdb_expects_strings() {
    ok(
        r#"{"name":5,"timestamp":1,"value":1,"tags":{"n":7,"f":1.5,"b":true}}"#,
        &["5 b=true,f=1.5,n=7 value:Int(1) 1000000"],
    );
}

#[test]
fn escapes_and_unknown_fields() {
    ok(
        r#"{"name":"a\u00e9\"b","extra":{"x":[1,2]},"timestamp":1,"value":"l1\nl2","tags":{"k\\":"v\t"}}"#,
        &["aé\"b k\\=v\t value:Str(\"l1\\nl2\") 1000000"],
    );
}

#[test]
fn later_duplicates_of_an_attribute_win() {
    ok(
        r#"{"name":"a","name":"b","timestamp":1,"value":1,"value":2,"tags":{"x":"1"},"tags":{"y":"2"}}"#,
        &["b y=2 value:Int(2) 1000000"],
    );
}

#[test]
fn names_are_quoted_at_most_64_bytes() {
    let name = "n".repeat(100);
    let (_, errors, _) = run(&format!(r#"{{"name":"{name}","timestamp":1,"value":1}}"#));
    assert_eq!(
        errors[0].message,
        format!(
            "metric[0](name={}).tags count must be greater than or equal to 1.",
            "n".repeat(64)
        )
    );
}

#[test]
fn errors_past_the_limit_are_counted_not_kept() {
    let body = format!("[{}]", vec!["{}"; 50].join(","));
    let opts = ParseOptions {
        max_errors: 10,
        ..ParseOptions::default()
    };
    let (_, errors, summary) = run_with(&body, &opts);
    assert_eq!(errors.len(), 10);
    // Each `{}` breaks two rules: no name, no tags.
    assert_eq!(summary.errors, 100);
    assert_eq!(summary.by_kind[ErrorKind::MissingName.index()], 50);
    assert_eq!(summary.by_kind[ErrorKind::MissingTags.index()], 50);
    assert_eq!(summary.objects, 50);
}

#[test]
fn deep_nesting_is_skipped_without_recursion() {
    // serde_json skips ignored values with a loop, not recursion: a hostile
    // depth costs no stack.
    let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(100_000), "]".repeat(100_000));
    err(
        &format!(
            r#"[{{"name":"m","x":{},"timestamp":1,"value":{},"tags":{{"a":"b"}}}}]"#,
            deep("1"),
            deep("2")
        ),
        &["metric[0](name=m) value is an invalid type"],
        0,
    );
    err(&deep(""), &["metric[0] is an invalid type"], 0);
}

#[test]
fn helpers_follow_kairosdb() {
    for (s, want) in [
        ("1", true),
        ("-1", true),
        ("+.5", true),
        (".", false),
        ("-", false),
        ("", false),
        ("1.2.", true),
        ("1.2.3", false),
        ("1e5", false),
        ("12a", false),
    ] {
        assert_eq!(is_number(s), want, "{s}");
    }
    assert_eq!(truncate(-1.9), Some(-1));
    assert_eq!(truncate(9.3e18), None);
    assert_eq!(truncate(f64::NAN), None);
}

// ---- the batch's limits ----

fn run_limited(
    input: &str,
    max_tags: usize,
    max_key: usize,
) -> (Vec<String>, Vec<ParseError>, Summary) {
    let mut batch = Batch::new();
    batch.set_limits(conflux_core::metric::Limits {
        max_tags,
        max_series_key_bytes: max_key,
    });
    let mut errors = Vec::new();
    let summary = parse(
        input.as_bytes(),
        &ParseOptions::default(),
        &mut batch,
        &mut errors,
    );
    assert_eq!(summary.metrics, batch.len());
    assert_eq!(summary.errors, summary.by_kind.iter().sum::<usize>());
    (dump(&batch), errors, summary)
}

#[test]
fn an_object_past_the_tag_limit_is_reported_once_and_the_others_kept() {
    let body = r#"[
        {"name":"a","tags":{"x":"1","y":"2"},"datapoints":[[1,1],[2,2]]},
        {"name":"b","tags":{"x":"1","y":"2","z":"3"},"datapoints":[[1,1],[2,2],[3,3]]},
        {"name":"c","tags":{"x":"1"},"timestamp":3,"value":3}
    ]"#;
    let (got, errors, summary) = run_limited(body, 2, 1000);
    assert_eq!(
        got,
        [
            "a x=1,y=2 value:Int(1) 1000000",
            "a x=1,y=2 value:Int(2) 2000000",
            "c x=1 value:Int(3) 3000000",
        ]
    );
    let msgs: Vec<_> = errors
        .iter()
        .map(|e| (e.object, e.kind.reason(), e.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        [(
            Some(1),
            "too_many_tags",
            "metric[1](name=b).tags count must be less than or equal to 2."
        )]
    );
    assert_eq!(summary.by_kind[ErrorKind::TooManyTags.index()], 1);
}

#[test]
fn an_object_past_the_series_key_limit_is_reported_once_and_the_others_kept() {
    // `m,host=web01` is 12 bytes: at the limit.
    let body = r#"[
        {"name":"m","tags":{"host":"web01"},"timestamp":1,"value":1},
        {"name":"m","tags":{"host":"web012"},"timestamp":2,"value":2,"datapoints":[[3,3]]},
        {"name":"n","tags":{"h":"1"},"timestamp":4,"value":4}
    ]"#;
    let (got, errors, _) = run_limited(body, 256, 12);
    assert_eq!(
        got,
        [
            "m host=web01 value:Int(1) 1000000",
            "n h=1 value:Int(4) 4000000",
        ]
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind.reason(), "series_key_too_long");
    assert_eq!(
        errors[0].message,
        "metric[1](name=m).series key length must be less than or equal to 12 bytes."
    );
}
