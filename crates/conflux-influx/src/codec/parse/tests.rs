use super::*;
use conflux_core::Metric;

/// Default time given to lines without a timestamp in these tests.
const NOW: i64 = 1_700_000_000_123_456_789;

fn run(input: &[u8], opts: &ParseOptions) -> (Vec<Metric>, Vec<LineError>) {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let n = parse(input, opts, &mut batch, &mut errors);
    assert_eq!(n, batch.len(), "returned count");
    (batch.iter().map(|m| m.to_metric()).collect(), errors)
}

fn opts() -> ParseOptions {
    ParseOptions::new(Precision::Ns, NOW)
}

/// `input` parses without error into exactly `expected`.
#[track_caller]
fn oks(input: &str, expected: &[Metric]) {
    let (got, errors) = run(input.as_bytes(), &opts());
    assert!(errors.is_empty(), "{input:?}: unexpected errors {errors:?}");
    assert_eq!(got, expected, "{input:?}");
}

#[track_caller]
fn ok(input: &str, expected: Metric) {
    oks(input, &[expected]);
}

/// `input` gives no metric and exactly one error with this message.
#[track_caller]
fn err(input: &str, expected: &str) {
    err_bytes(input.as_bytes(), expected);
}

#[track_caller]
fn err_bytes(input: &[u8], expected: &str) {
    let (got, errors) = run(input, &opts());
    assert!(got.is_empty(), "{input:?}: unexpected metrics {got:?}");
    assert_eq!(errors.len(), 1, "{input:?}: {errors:?}");
    assert_eq!(errors[0].message, expected, "{input:?}");
}

/// `input` gives no metric and one error of this kind.
#[track_caller]
fn err_kind(input: &str, kind: ErrorKind) {
    let (got, errors) = run(input.as_bytes(), &opts());
    assert!(got.is_empty(), "{input:?}: unexpected metrics {got:?}");
    assert_eq!(
        errors.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![kind],
        "{input:?}"
    );
}

fn m(name: &str) -> Metric {
    Metric::new(name).at(NOW)
}

// --- measurement, tags, field keys -----------------------------------------

#[test]
fn parses_a_telegraf_line() {
    ok(
        "cpu,cpu=cpu0,host=a usage_idle=99.5,usage_user=0.25 1700000000000000000",
        m("cpu")
            .tag("cpu", "cpu0")
            .tag("host", "a")
            .field("usage_idle", 99.5)
            .field("usage_user", 0.25)
            .at(1_700_000_000_000_000_000),
    );
}
#[test]
fn unescapes_comma_and_space_in_measurement() {
    ok(r"c\,p\ u v=1", m("c,p u").field("v", 1.0));
}
#[test]
fn keeps_equals_and_other_backslashes_in_measurement() {
    ok(r"a=b\=c\d v=1", m(r"a=b\=c\d").field("v", 1.0));
}
#[test]
fn keeps_double_backslash_in_measurement() {
    ok(r"a\\b v=1", m(r"a\\b").field("v", 1.0));
}
#[test]
fn backslash_before_comma_escapes_it_even_after_a_backslash() {
    ok(r"a\\,t=1 v=1", m(r"a\,t=1").field("v", 1.0));
}
#[test]
fn unescapes_tag_keys_and_values() {
    ok(
        r"m,k\ \,\==v\ \,\= f=1i",
        m("m").tag("k ,=", "v ,=").field("f", 1i64),
    );
}
#[test]
fn keeps_unknown_escapes_in_tags() {
    ok(
        r"m,k\n=C:\\dir\x f=1i",
        m("m").tag(r"k\n", r"C:\\dir\x").field("f", 1i64),
    );
}
#[test]
fn unescapes_field_keys() {
    ok(r"m f\ \,\=\x=1i", m("m").field(r"f ,=\x", 1i64));
}
#[test]
fn sorts_tags() {
    ok(
        "m,b=2,a=1 f=1i",
        m("m").tag("a", "1").tag("b", "2").field("f", 1i64),
    );
}
#[test]
fn accepts_quotes_and_unicode_in_keys() {
    ok(
        "mé,t\"=\"x\" \"f\"=1i",
        m("mé").tag("t\"", "\"x\"").field("\"f\"", 1i64),
    );
}
#[test]
fn takes_an_equals_sign_as_first_byte_of_a_tag_value() {
    ok("m,t== f=1i", m("m").tag("t", "=").field("f", 1i64));
}
#[test]
fn keeps_tabs_inside_keys() {
    ok(
        "m\tx,t=a\tb f\tg=1i",
        m("m\tx").tag("t", "a\tb").field("f\tg", 1i64),
    );
}
#[test]
fn accepts_names_starting_with_underscore() {
    ok("_m,_t=1 _f=1i", m("_m").tag("_t", "1").field("_f", 1i64));
}

// --- string fields ------------------------------------------------------------

#[test]
fn unescapes_quote_and_backslash_in_strings() {
    ok(r#"m s="a\"b\\c""#, m("m").field("s", r#"a"b\c"#));
}
#[test]
fn follows_the_backslash_run_table() {
    // ANCHORS 2.4 row 3: \ -> \, \\ -> \, \\\ -> \\, \\\\ -> \\, \\\\\ -> \\\.
    ok(
        r#"m a="\x",b="\\x",c="\\\x",d="\\\\x",e="\\\\\x""#,
        m("m")
            .field("a", r"\x")
            .field("b", r"\x")
            .field("c", r"\\x")
            .field("d", r"\\x")
            .field("e", r"\\\x"),
    );
}
#[test]
fn keeps_separators_inside_strings() {
    ok(
        r#"m s="a, b=c d",t=1i"#,
        m("m").field("s", "a, b=c d").field("t", 1i64),
    );
}
#[test]
fn accepts_empty_strings() {
    ok(r#"m s="""#, m("m").field("s", ""));
}
#[test]
fn keeps_a_newline_inside_a_string() {
    oks(
        "m s=\"a\nb\" 5\nn v=1i 6",
        &[
            m("m").field("s", "a\nb").at(5),
            m("n").field("v", 1i64).at(6),
        ],
    );
}
#[test]
fn rejects_an_unclosed_string_up_to_the_end() {
    err(
        "m f=\"a\nBAD\n",
        "unable to parse 'm f=\"a\nBAD': unbalanced quotes",
    );
}
#[test]
fn rejects_an_escaped_closing_quote() {
    err(
        r#"m f="a\""#,
        r#"unable to parse 'm f="a\"': unbalanced quotes"#,
    );
}
#[test]
fn rejects_garbage_after_a_closing_quote() {
    err(
        r#"m f="a"b"#,
        r#"unable to parse 'm f="a"b': invalid field format"#,
    );
}
#[test]
fn a_quote_in_a_tag_value_does_not_join_lines() {
    oks(
        "m,t=a\"b f=1i 1\nm f=2i 2",
        &[
            m("m").tag("t", "a\"b").field("f", 1i64).at(1),
            m("m").field("f", 2i64).at(2),
        ],
    );
}

// --- numbers and booleans -----------------------------------------------------------

#[test]
fn parses_float_spellings() {
    ok(
        "m a=1,b=1.0,c=-1.2e+78,d=1.e+78,e=1.E+78,f=.5,g=-.5,h=1.,i=1E5,j=-0",
        m("m")
            .field("a", 1.0)
            .field("b", 1.0)
            .field("c", -1.2e78)
            .field("d", 1e78)
            .field("e", 1e78)
            .field("f", 0.5)
            .field("g", -0.5)
            .field("h", 1.0)
            .field("i", 1e5)
            .field("j", -0.0),
    );
}
#[test]
fn rejects_a_leading_plus() {
    err("m v=+5", "unable to parse 'm v=+5': invalid boolean");
}
#[test]
fn rejects_nan_and_inf() {
    err("m v=NaN", "unable to parse 'm v=NaN': invalid number");
    err("m v=nan", "unable to parse 'm v=nan': invalid number");
    err("m v=inf", "unable to parse 'm v=inf': invalid boolean");
    err("m v=-Inf", "unable to parse 'm v=-Inf': invalid number");
}
#[test]
fn rejects_float_overflow() {
    err("m v=1e999", "unable to parse 'm v=1e999': invalid float");
}
#[test]
fn rejects_malformed_floats() {
    err("m v=.e3", "unable to parse 'm v=.e3': invalid float");
    err("m v=1e", "unable to parse 'm v=1e': invalid float");
    err("m v=1.2.3", "unable to parse 'm v=1.2.3': invalid number");
    err("m v=1-2", "unable to parse 'm v=1-2': invalid number");
    err("m v=-", "unable to parse 'm v=-': invalid number");
    err("m v=.", "unable to parse 'm v=.': invalid number");
}
#[test]
fn parses_integer_bounds() {
    ok(
        "m a=-9223372036854775808i,b=9223372036854775807i,c=0i,d=-0i",
        m("m")
            .field("a", i64::MIN)
            .field("b", i64::MAX)
            .field("c", 0i64)
            .field("d", 0i64),
    );
}
#[test]
fn rejects_integer_overflow_with_go_wording() {
    err(
        "m v=9223372036854775808i",
        "unable to parse 'm v=9223372036854775808i': unable to parse integer 9223372036854775808: strconv.ParseInt: parsing \"9223372036854775808\": value out of range",
    );
    err_kind("m v=-9223372036854775809i", ErrorKind::IntegerOutOfRange);
}
#[test]
fn rejects_malformed_integers() {
    err("m v=1ii", "unable to parse 'm v=1ii': invalid number");
    err("m v=1i5", "unable to parse 'm v=1i5': invalid number");
    err("m v=1.5i", "unable to parse 'm v=1.5i': invalid number");
    err("m v=1e5i", "unable to parse 'm v=1e5i': invalid number");
    err("m v=-i", "unable to parse 'm v=-i': invalid number");
}
#[test]
fn parses_unsigned_bounds() {
    ok(
        "m a=0u,b=18446744073709551615u",
        m("m").field("a", 0u64).field("b", u64::MAX),
    );
}
#[test]
fn rejects_unsigned_overflow_and_sign() {
    err(
        "m v=18446744073709551616u",
        "unable to parse 'm v=18446744073709551616u': unable to parse unsigned 18446744073709551616: strconv.ParseUint: parsing \"18446744073709551616\": value out of range",
    );
    err("m v=-1u", "unable to parse 'm v=-1u': invalid number");
    err("m v=1uu", "unable to parse 'm v=1uu': invalid number");
}
#[test]
fn parses_all_ten_booleans() {
    ok(
        "m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE",
        m("m")
            .field("a", true)
            .field("b", true)
            .field("c", true)
            .field("d", true)
            .field("e", true)
            .field("f", false)
            .field("g", false)
            .field("h", false)
            .field("i", false)
            .field("j", false),
    );
}
#[test]
fn rejects_other_booleans() {
    err("m v=tRUE", "unable to parse 'm v=tRUE': invalid boolean");
    err("m v=yes", "unable to parse 'm v=yes': invalid boolean");
    err("m v=truex", "unable to parse 'm v=truex': invalid boolean");
}
#[test]
fn a_quoted_true_is_a_string() {
    ok(r#"m v="true""#, m("m").field("v", "true"));
}

// --- timestamps ----------------------------------------------------------------

#[test]
fn missing_timestamp_takes_the_default() {
    ok("m v=1i", m("m").field("v", 1i64));
    ok("m v=1i   ", m("m").field("v", 1i64));
}
#[test]
fn default_time_is_truncated_to_the_precision() {
    let (got, _) = run(b"m v=1i", &ParseOptions::new(Precision::S, NOW));
    assert_eq!(
        got,
        vec![
            Metric::new("m")
                .field("v", 1i64)
                .at(1_700_000_000_000_000_000)
        ]
    );
}
#[test]
fn scales_timestamps_by_precision() {
    for (p, ts) in [
        (Precision::Ns, 5),
        (Precision::Us, 5_000),
        (Precision::Ms, 5_000_000),
        (Precision::S, 5_000_000_000),
        (Precision::M, 300_000_000_000),
        (Precision::H, 18_000_000_000_000),
    ] {
        let (got, errors) = run(b"m v=1i 5", &ParseOptions::new(p, NOW));
        assert!(errors.is_empty());
        assert_eq!(got[0].timestamp, ts, "{p:?}");
    }
}
#[test]
fn rejects_a_timestamp_that_overflows_once_scaled() {
    let (got, errors) = run(b"m v=1i 9223372037", &ParseOptions::new(Precision::S, NOW));
    assert!(got.is_empty());
    assert_eq!(
        errors[0].message,
        "unable to parse 'm v=1i 9223372037': time outside range -9223372036854775806 - 9223372036854775806"
    );
}
#[test]
fn accepts_the_timestamp_range_bounds() {
    oks(
        "m v=1i -9223372036854775806\nm v=1i 9223372036854775806",
        &[
            m("m").field("v", 1i64).at(MIN_NANO_TIME),
            m("m").field("v", 1i64).at(MAX_NANO_TIME),
        ],
    );
}
#[test]
fn rejects_the_sentinel_timestamps() {
    err_kind(
        "m v=1i -9223372036854775808",
        ErrorKind::TimestampOutOfRange,
    );
    err_kind("m v=1i 9223372036854775807", ErrorKind::TimestampOutOfRange);
}
#[test]
fn rejects_bad_timestamps() {
    err("m v=1 abc", "unable to parse 'm v=1 abc': bad timestamp");
    err("m v=1 1.5", "unable to parse 'm v=1 1.5': bad timestamp");
    err(
        "m v=1 -",
        "unable to parse 'm v=1 -': strconv.ParseInt: parsing \"-\": invalid syntax",
    );
    err(
        "m v=1 99999999999999999999",
        "unable to parse 'm v=1 99999999999999999999': strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
    );
}
#[test]
fn accepts_negative_timestamps() {
    ok("m v=1i -5", m("m").field("v", 1i64).at(-5));
}
#[test]
fn rejects_garbage_after_the_timestamp() {
    err("m v=1 5 6", "unable to parse 'm v=1 5 6': point is invalid");
    err("m v=1 5\tx", "unable to parse 'm v=1 5\tx': bad timestamp");
    ok("m v=1i 5   ", m("m").field("v", 1i64).at(5));
}

// --- missing pieces --------------------------------------------------------------

#[test]
fn reports_missing_pieces_in_influx_words() {
    err(
        "this is not line protocol!!",
        "unable to parse 'this is not line protocol!!': invalid field format",
    );
    err("m v=", "unable to parse 'm v=': missing field value");
    err(
        "m v=,w=1",
        "unable to parse 'm v=,w=1': missing field value",
    );
    err("m", "unable to parse 'm': missing fields");
    err("m ", "unable to parse 'm ': missing fields");
    err("m,t=1", "unable to parse 'm,t=1': missing fields");
    err("m,t v=1", "unable to parse 'm,t v=1': missing tag value");
    err("m,t= v=1", "unable to parse 'm,t= v=1': missing tag value");
    err("m,=1 v=1", "unable to parse 'm,=1 v=1': missing tag key");
    err("m, v=1", "unable to parse 'm, v=1': missing tag key");
    err(
        "m,t=a=b v=1",
        "unable to parse 'm,t=a=b v=1': invalid tag format",
    );
    err(
        ",t=1 v=1",
        "unable to parse ',t=1 v=1': missing measurement",
    );
    err("m =1", "unable to parse 'm =1': missing field key");
    err("m v=1,=2", "unable to parse 'm v=1,=2': missing field key");
    err("m v=1,w", "unable to parse 'm v=1,w': invalid field format");
    err(
        "m v=1,,w=2",
        "unable to parse 'm v=1,,w=2': invalid field format",
    );
    err("m v=1,", "unable to parse 'm v=1,': invalid field format");
    err(
        "m v=1, w=2",
        "unable to parse 'm v=1, w=2': invalid field format",
    );
}

// --- duplicates, limits, reserved keys ------------------------------------------------

#[test]
fn rejects_duplicate_tags() {
    err(
        "m,t=1,t=2 v=1",
        "unable to parse 'm,t=1,t=2 v=1': duplicate tags",
    );
    err(
        "m,t=1,a=1,t=1 v=1",
        "unable to parse 'm,t=1,a=1,t=1 v=1': duplicate tags",
    );
}
#[test]
fn duplicate_fields_last_wins() {
    ok(
        "m a=1i,b=2i,a=\"x\"",
        m("m").field("b", 2i64).field("a", "x"),
    );
}
#[test]
fn keeps_duplicate_points() {
    oks(
        "m v=1i 5\nm v=2i 5",
        &[m("m").field("v", 1i64).at(5), m("m").field("v", 2i64).at(5)],
    );
}
#[test]
fn enforces_the_key_length_limit() {
    let opts = ParseOptions {
        max_key_bytes: 20,
        ..opts()
    };
    let (got, errors) = run(b"m,host=abcdefgh f=1i", &opts);
    assert_eq!(got.len(), 1, "{errors:?}"); // 15 + 4 + 1 = 20: at the limit
    let (_, errors) = run(b"m,host=abcdefgh fg=1i", &opts);
    assert_eq!(
        errors[0].message,
        "unable to parse 'm,host=abcdefgh fg=1i': max key length exceeded: 21 > 20"
    );
    let (_, errors) = run(b"m,host=abcdefghijklmnop f=1i", &opts);
    assert_eq!(
        errors[0].message,
        "unable to parse 'm,host=abcdefghijklmnop f=1i': max key length exceeded: 23 > 20"
    );
    assert_eq!(errors[0].kind, ErrorKind::MaxKeyLength);
}
#[test]
fn the_default_key_limit_is_influxdbs() {
    // 65530 + 4 + 1 = 65535: at the limit.
    let (got, errors) = run(format!("{} f=1i", "k".repeat(65_530)).as_bytes(), &opts());
    assert_eq!((got.len(), errors.len()), (1, 0));
    let (got, errors) = run(format!("{} f=1i", "k".repeat(65_531)).as_bytes(), &opts());
    assert_eq!(got.len(), 0);
    assert!(
        errors[0]
            .message
            .ends_with("': max key length exceeded: 65536 > 65535")
    );
}
#[test]
fn rejects_a_time_tag() {
    err(
        "m,time=1 v=1",
        "unable to parse 'm,time=1 v=1': invalid tag key: input tag \"time\" is invalid",
    );
}
#[test]
fn drops_a_time_field_and_keeps_the_rest() {
    ok("m time=1,v=2 5", m("m").field("v", 2.0).at(5));
    err(
        "m time=1 5",
        "unable to parse 'm time=1 5': invalid field name: input field \"time\" is invalid",
    );
}

// --- lines, whitespace, comments, encodings ---------------------------------------

#[test]
fn skips_comments_blank_lines_and_leading_whitespace() {
    oks(
        "\n  # a comment\n   \n\t m v=1i 5\n\0m v=2i 6\n#x=\"\nm v=3i 7",
        &[
            m("m").field("v", 1i64).at(5),
            m("m").field("v", 2i64).at(6),
            m("m").field("v", 3i64).at(7),
        ],
    );
}
#[test]
fn accepts_crlf_line_endings() {
    oks(
        "m v=1i 5\r\n\r\nm s=\"a\" 6\r\nm b=t\r\nm v=2i\r\n",
        &[
            m("m").field("v", 1i64).at(5),
            m("m").field("s", "a").at(6),
            m("m").field("b", true),
            m("m").field("v", 2i64),
        ],
    );
}
#[test]
fn a_lone_carriage_return_stays_data() {
    err("m v=1\ri", "unable to parse 'm v=1\ri': invalid number");
}
#[test]
fn skips_tabs_and_spaces_between_sections() {
    ok("m \t v=1i \t 5", m("m").field("v", 1i64).at(5));
}
#[test]
fn a_backslash_does_not_join_lines() {
    let (got, errors) = run(b"m,t=a\\\nb v=1i", &opts());
    assert_eq!(got, vec![m("b").field("v", 1i64)]);
    assert_eq!(
        errors.iter().map(|e| (e.line, e.kind)).collect::<Vec<_>>(),
        vec![(1, ErrorKind::MissingFields)]
    );
}
#[test]
fn rejects_invalid_utf8_per_line() {
    let (got, errors) = run(b"m v=1i 1\nm,t=\xff v=1i 2\nm v=3i 3", &opts());
    assert_eq!(got.len(), 2);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 2);
    assert_eq!(errors[0].kind, ErrorKind::InvalidUtf8);
    assert_eq!(
        errors[0].message,
        "unable to parse 'm,t=\u{fffd} v=1i 2': invalid utf-8"
    );
    err_bytes(
        b"m s=\"\xc3\x28\"",
        "unable to parse 'm s=\"\u{fffd}(\"': invalid utf-8",
    );
}
#[test]
fn keeps_good_lines_around_bad_ones_with_line_numbers() {
    let (got, errors) = run(
        b"m v=1 5\nbad line\n\nm v=\n  m w=2 5\nm s=\"x\ny\" 1\nm v=zz",
        &opts(),
    );
    assert_eq!(got.len(), 3);
    let lines: Vec<_> = errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (2, "unable to parse 'bad line': invalid field format"),
            (4, "unable to parse 'm v=': missing field value"),
            (8, "unable to parse 'm v=zz': invalid boolean"),
        ]
    );
}
#[test]
fn quotes_at_most_64_bytes() {
    let line = format!("{} v=", "é".repeat(40));
    let (_, errors) = run(line.as_bytes(), &opts());
    let msg = &errors[0].message;
    let quoted = msg
        .strip_prefix("unable to parse '")
        .unwrap()
        .strip_suffix("': missing field value")
        .unwrap();
    assert_eq!(quoted, "é".repeat(32));
}
#[test]
fn accepts_a_long_line() {
    let fields: Vec<String> = (0..5000).map(|i| format!("f{i}={i}i")).collect();
    let (got, errors) = run(format!("m {}", fields.join(",")).as_bytes(), &opts());
    assert!(errors.is_empty());
    assert_eq!(got[0].fields.len(), 5000);
}
#[test]
fn a_builder_failure_leaves_the_batch_clean() {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    parse(
        b"m,t=1,t=2 v=1\nm,time=x v=1\nm time=1",
        &opts(),
        &mut batch,
        &mut errors,
    );
    assert_eq!(errors.len(), 3);
    assert!(batch.is_empty());
    assert_eq!(batch.arena_bytes(), 0);
}
#[test]
fn empty_and_blank_bodies_parse_to_nothing() {
    oks("", &[]);
    oks("\n\n \t\n# only a comment", &[]);
}

/// Parse `input` into a batch with these limits.
fn run_limited(input: &str, max_tags: usize, max_key: usize) -> (Vec<Metric>, Vec<LineError>) {
    let mut batch = Batch::new();
    batch.set_limits(conflux_core::metric::Limits {
        max_tags,
        max_series_key_bytes: max_key,
    });
    let mut errors = Vec::new();
    let n = parse(input.as_bytes(), &opts(), &mut batch, &mut errors);
    assert_eq!(n, batch.len(), "returned count");
    (batch.iter().map(|m| m.to_metric()).collect(), errors)
}

#[test]
fn rejects_a_line_past_the_tag_limit_and_keeps_the_others() {
    let (got, errors) = run_limited("a,x=1,y=2 f=1i 1\nb,x=1,y=2,z=3 f=1i 2\nc f=1i 3", 2, 1000);
    assert_eq!(
        got.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 2);
    assert_eq!(errors[0].kind, ErrorKind::TooManyTags);
    assert_eq!(errors[0].kind.reason(), "too_many_tags");
    assert_eq!(
        errors[0].message,
        "unable to parse 'b,x=1,y=2,z=3 f=1i 2': too many tags (max 2)"
    );
}

#[test]
fn rejects_a_line_past_the_series_key_limit_and_keeps_the_others() {
    // `m,k=a b` is 7 bytes unescaped (9 as written): at the limit.
    let (got, errors) = run_limited("m,k=a\\ b f=1i 1\nm,k=a\\ bc f=1i 2\nm f=1i 3", 256, 7);
    assert_eq!(got.len(), 2, "{errors:?}");
    assert_eq!(got[0].tags, vec![("k".to_owned(), "a b".to_owned())]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 2);
    assert_eq!(errors[0].kind, ErrorKind::SeriesKeyTooLong);
    assert_eq!(errors[0].kind.reason(), "series_key_too_long");
    assert_eq!(
        errors[0].message,
        "unable to parse 'm,k=a\\ bc f=1i 2': series key too long (max 7 bytes)"
    );
}

#[test]
fn the_default_tag_limit_is_256() {
    let line = |n: usize| {
        let tags: String = (0..n).map(|i| format!(",t{i:03}=v")).collect();
        format!("m{tags} f=1i")
    };
    let (got, errors) = run(line(256).as_bytes(), &opts());
    assert_eq!((got.len(), errors.len()), (1, 0));
    let (got, errors) = run(line(257).as_bytes(), &opts());
    assert_eq!(got.len(), 0);
    assert!(
        errors[0].message.ends_with("': too many tags (max 256)"),
        "{}",
        errors[0].message
    );
}
