#![allow(clippy::unwrap_used, clippy::expect_used)]

use conflux_core::{Batch, Metric};

use super::super::error::{ErrorKind, LineError, PickleError};
use super::super::parse::{ParseOptions, parse_pickle};
use super::op;

const NOW: i64 = 1_700_000_000_123_456_789;
const S: i64 = 1_000_000_000;

/// Builds pickles opcode by opcode, the way CPython's pickler writes them.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn proto(v: u8) -> P {
        P(vec![op::PROTO, v])
    }
    fn op(mut self, code: u8) -> P {
        self.0.push(code);
        self
    }
    fn raw(mut self, bytes: &[u8]) -> P {
        self.0.extend_from_slice(bytes);
        self
    }
    fn unicode(self, s: &str) -> P {
        let n = (s.len() as u32).to_le_bytes();
        self.op(op::BINUNICODE).raw(&n).raw(s.as_bytes())
    }
    fn short_unicode(self, s: &str) -> P {
        self.op(op::SHORT_BINUNICODE)
            .raw(&[s.len() as u8])
            .raw(s.as_bytes())
    }
    fn short_string(self, s: &[u8]) -> P {
        self.op(op::SHORT_BINSTRING).raw(&[s.len() as u8]).raw(s)
    }
    fn binint(self, i: i32) -> P {
        self.op(op::BININT).raw(&i.to_le_bytes())
    }
    fn float(self, f: f64) -> P {
        self.op(op::BINFLOAT).raw(&f.to_be_bytes())
    }
    fn put(self, id: u8) -> P {
        self.op(op::BINPUT).raw(&[id])
    }
    fn get(self, id: u8) -> P {
        self.op(op::BINGET).raw(&[id])
    }
    /// `(path, (ts, value))` as protocol 2 writes it, memo puts included.
    fn item(self, path: &str, ts: i32, value: f64, memo: &mut u8) -> P {
        let p = self.unicode(path).put(*memo).binint(ts).float(value);
        let p = p
            .op(op::TUPLE2)
            .put(*memo + 1)
            .op(op::TUPLE2)
            .put(*memo + 2);
        *memo += 3;
        p
    }
    fn done(self) -> Vec<u8> {
        self.op(op::STOP).0
    }
}

/// `pickle.dumps(items, protocol=2)` for a list of more than one item.
fn protocol2(items: &[(&str, i32, f64)]) -> Vec<u8> {
    let mut memo = 1;
    let mut p = P::proto(2).op(op::EMPTY_LIST).put(0).op(op::MARK);
    for (path, ts, v) in items {
        p = p.item(path, *ts, *v, &mut memo);
    }
    p.op(op::APPENDS).done()
}

fn load(frame: &[u8]) -> Result<(Vec<Metric>, Vec<LineError>), PickleError> {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let n = parse_pickle(frame, &ParseOptions::new(NOW), &mut batch, &mut errors)?;
    assert_eq!(n, batch.len());
    Ok((batch.iter().map(|m| m.to_metric()).collect(), errors))
}

fn m(name: &str, value: f64, ts: i64) -> Metric {
    Metric::new(name).field("value", value).at(ts)
}

#[track_caller]
fn refused(frame: &[u8], kind: ErrorKind, message: &str) {
    let e = load(frame).unwrap_err();
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.message, message, "{e}");
}

#[test]
fn reads_protocol_2_as_carbon_clients_send_it() {
    let frame = protocol2(&[("a.b", 1_700_000_000, 1.5), ("c.d", 1_700_000_001, -2.0)]);
    let (got, errors) = load(&frame).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        got,
        vec![
            m("a.b", 1.5, 1_700_000_000 * S),
            m("c.d", -2.0, 1_700_000_001 * S)
        ]
    );
}

#[test]
fn reads_a_single_item_list_built_with_append() {
    let mut memo = 1;
    let frame = P::proto(2)
        .op(op::EMPTY_LIST)
        .put(0)
        .item("x", 10, 1.0, &mut memo)
        .op(op::APPEND)
        .done();
    assert_eq!(load(&frame).unwrap().0, vec![m("x", 1.0, 10 * S)]);
}

#[test]
fn reads_protocol_0_as_python_2_writes_it() {
    // pickle.dumps([('a.b', (1700000000, 1.5))], 0) under Python 2.
    let frame = b"(lp0\n(S'a.b'\np1\n(I1700000000\nF1.5\ntp2\ntp3\na.";
    assert_eq!(
        load(frame).unwrap().0,
        vec![m("a.b", 1.5, 1_700_000_000 * S)]
    );
}

#[test]
fn reads_protocol_0_as_python_3_writes_it() {
    // Python 3 writes str as UNICODE (raw-unicode-escape), longs as `L…L`.
    let frame = b"(lp0\n(Vcaf\xe9.\\u20ac\np1\n(L1700000000L\nF0.25\ntp2\ntp3\na.";
    assert_eq!(
        load(frame).unwrap().0,
        vec![m("café.€", 0.25, 1_700_000_000 * S)]
    );
}

#[test]
fn reads_protocol_1_with_mark_and_appends() {
    let frame = P::default()
        .op(op::EMPTY_LIST)
        .put(0)
        .op(op::MARK)
        .op(op::MARK)
        .short_string(b"p1")
        .op(op::MARK)
        .op(op::BININT1)
        .raw(&[7])
        .op(op::BININT2)
        .raw(&300u16.to_le_bytes())
        .op(op::TUPLE)
        .op(op::TUPLE)
        .op(op::APPENDS)
        .done();
    assert_eq!(load(&frame).unwrap().0, vec![m("p1", 300.0, 7 * S)]);
}

#[test]
fn reads_protocol_4_frames_and_memoize() {
    let body = P::default()
        .op(op::EMPTY_LIST)
        .op(op::MEMOIZE)
        .short_unicode("p")
        .op(op::MEMOIZE)
        .op(op::BININT1)
        .raw(&[5])
        .op(op::BININT1)
        .raw(&[6])
        .op(op::TUPLE2)
        .op(op::MEMOIZE)
        .op(op::TUPLE2)
        .op(op::MEMOIZE)
        .op(op::APPEND)
        .done();
    let frame = P::proto(4)
        .op(op::FRAME)
        .raw(&(body.len() as u64).to_le_bytes())
        .raw(&body)
        .0;
    assert_eq!(load(&frame).unwrap().0, vec![m("p", 6.0, 5 * S)]);
}

#[test]
fn memo_references_share_one_object() {
    // The same item twice, by reference: both count.
    let mut memo = 1;
    let frame = P::proto(2)
        .op(op::EMPTY_LIST)
        .put(0)
        .op(op::MARK)
        .item("shared", 1, 2.0, &mut memo)
        .get(3)
        .op(op::APPENDS)
        .done();
    assert_eq!(
        load(&frame).unwrap().0,
        vec![m("shared", 2.0, S), m("shared", 2.0, S)]
    );
}

#[test]
fn nested_memo_references_cost_linear_work() {
    // x0 = []; x(n+1) = [x(n), x(n)]: a deep copy would hold 2^60 lists.
    let mut p = P::proto(2).op(op::EMPTY_LIST).put(0);
    for i in 0..60u8 {
        p = p
            .op(op::MARK)
            .get(i)
            .get(i)
            .op(op::LIST)
            .put(i + 1)
            .op(op::POP);
    }
    let frame = p.get(60).done();
    let (got, errors) = load(&frame).unwrap();
    assert!(got.is_empty());
    // Two items, each a two-item list whose second element is a list, not a pair.
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.kind == ErrorKind::InvalidItem));
}

#[test]
fn numbers_in_every_encoding() {
    let frame = P::proto(2)
        .op(op::EMPTY_LIST)
        .op(op::MARK)
        // LONG1, little-endian two's complement.
        .unicode("long")
        .op(op::LONG1)
        .raw(&[2, 0x10, 0x27])
        .op(op::LONG1)
        .raw(&[1, 0xff])
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        // bools are ints, as float(True) is 1.0.
        .unicode("bool")
        .binint(3)
        .op(op::NEWTRUE)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        // a string value is read as float() reads it.
        .unicode("text")
        .unicode("-1")
        .unicode("-1.25")
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        // a LONG past i64 becomes a float.
        .unicode("huge")
        .binint(4)
        .op(op::LONG1)
        .raw(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        .op(op::APPENDS)
        .done();
    let (got, errors) = load(&frame).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        got,
        vec![
            m("long", -1.0, 10_000 * S),
            m("bool", 1.0, 3 * S),
            m("text", -1.25, NOW),
            m("huge", 2f64.powi(64), 4 * S),
        ]
    );
}

#[test]
fn bad_items_are_skipped_one_by_one() {
    let mut memo = 1;
    let frame = P::proto(2)
        .op(op::EMPTY_LIST)
        .put(0)
        .op(op::MARK)
        .item("good", 1, 1.0, &mut memo)
        // not a pair
        .unicode("alone")
        // (path, (ts, None))
        .unicode("none")
        .binint(1)
        .op(op::NONE)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        // NaN value
        .unicode("nan")
        .binint(1)
        .float(f64::NAN)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        // bytes path that is not UTF-8
        .short_string(b"\xff")
        .binint(1)
        .float(1.0)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        // a bad tag in the path
        .unicode("m;bad")
        .binint(1)
        .float(1.0)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        .item("good2", 2, 2.0, &mut memo)
        .op(op::APPENDS)
        .done();
    let (got, errors) = load(&frame).unwrap();
    assert_eq!(got, vec![m("good", 1.0, S), m("good2", 2.0, 2 * S)]);
    let found: Vec<(usize, ErrorKind)> = errors.iter().map(|e| (e.line, e.kind)).collect();
    assert_eq!(
        found,
        vec![
            (2, ErrorKind::InvalidItem),
            (3, ErrorKind::InvalidItem),
            (4, ErrorKind::NanValue),
            (5, ErrorKind::InvalidUtf8),
            (6, ErrorKind::InvalidTag),
        ]
    );
    assert_eq!(
        errors[0].message,
        "item 2: not a (path, (timestamp, value)) tuple"
    );
}

#[test]
fn tags_and_timestamps_follow_the_plaintext_rules() {
    let frame = P::proto(2)
        .op(op::EMPTY_LIST)
        .op(op::MARK)
        .unicode("cpu;host=a")
        .binint(-1)
        .float(1.0)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        .unicode("mem")
        .float(1_700_000_000.5)
        .float(2.0)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        .op(op::APPENDS)
        .done();
    assert_eq!(
        load(&frame).unwrap().0,
        vec![
            Metric::new("cpu")
                .tag("host", "a")
                .field("value", 1.0)
                .at(NOW),
            m("mem", 2.0, 1_700_000_000_500_000_000),
        ]
    );
}

#[test]
fn a_tuple_of_items_works_like_a_list() {
    let frame = P::proto(2)
        .unicode("t")
        .binint(1)
        .float(1.0)
        .op(op::TUPLE2)
        .op(op::TUPLE2)
        .op(op::TUPLE1)
        .done();
    assert_eq!(load(&frame).unwrap().0, vec![m("t", 1.0, S)]);
}

#[test]
fn refuses_every_opcode_that_imports_or_calls() {
    // `os.system('echo')`, as an attacker would write it (protocol 0).
    refused(
        b"cos\nsystem\n(S'echo'\ntR.",
        ErrorKind::ForbiddenOpcode,
        "opcode GLOBAL (0x63) would import or call: refused",
    );
    for (code, name) in super::FORBIDDEN {
        // After valid data, so the refusal is not just a bad first byte.
        let frame = P::proto(2)
            .op(op::EMPTY_LIST)
            .op(code)
            .raw(b"x\ny\n")
            .done();
        let e = load(&frame).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ForbiddenOpcode, "{name}: {e}");
        assert_eq!(e.offset, 3, "{name}");
        assert!(e.message.starts_with(&format!("opcode {name} ")), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "invalid pickle at byte 3: opcode {name} (0x{code:02x}) would import or call: refused"
            )
        );
    }
}

#[test]
fn refuses_what_does_not_load() {
    refused(
        &P::proto(2).op(op::EMPTY_LIST).0,
        ErrorKind::InvalidPickle,
        "truncated",
    );
    refused(&[0xff], ErrorKind::InvalidPickle, "unknown opcode 0xff");
    refused(
        &P::proto(6).done(),
        ErrorKind::InvalidPickle,
        "unsupported pickle protocol 6",
    );
    refused(
        &P::default().op(op::APPEND).done(),
        ErrorKind::InvalidPickle,
        "stack underflow at APPEND",
    );
    refused(
        &P::default().done(),
        ErrorKind::InvalidPickle,
        "stack underflow at STOP",
    );
    refused(
        &P::default()
            .op(op::EMPTY_TUPLE)
            .op(op::NONE)
            .op(op::APPEND)
            .done(),
        ErrorKind::InvalidPickle,
        "APPEND on a tuple, not a list",
    );
    refused(
        &P::default().op(op::APPENDS).done(),
        ErrorKind::InvalidPickle,
        "APPENDS without MARK",
    );
    refused(
        &P::default().get(3).done(),
        ErrorKind::InvalidPickle,
        "memo id 3 not set",
    );
    refused(
        &P::default()
            .op(op::NONE)
            .op(op::LONG_BINPUT)
            .raw(&u32::MAX.to_le_bytes())
            .done(),
        ErrorKind::InvalidPickle,
        "memo id 4294967295 out of range",
    );
    refused(
        &P::default()
            .op(op::BINSTRING)
            .raw(&(-1i32).to_le_bytes())
            .done(),
        ErrorKind::InvalidPickle,
        "negative BINSTRING length",
    );
    // A length far past the frame is refused without allocating it.
    refused(
        &P::default()
            .op(op::BINBYTES8)
            .raw(&u64::MAX.to_le_bytes())
            .done(),
        ErrorKind::InvalidPickle,
        "truncated",
    );
    refused(
        b"(N.",
        ErrorKind::NotAList,
        "the pickle holds None, not a list of datapoints",
    );
    // A value under a MARK cannot be taken by TUPLE2.
    refused(
        &P::default()
            .op(op::NONE)
            .op(op::MARK)
            .op(op::NONE)
            .op(op::TUPLE2)
            .done(),
        ErrorKind::InvalidPickle,
        "stack underflow at TUPLE1/2/3",
    );
}

#[test]
fn trailing_bytes_after_stop_are_ignored() {
    let mut frame = protocol2(&[("a", 1, 1.0), ("b", 2, 2.0)]);
    frame.extend_from_slice(b"garbage");
    assert_eq!(load(&frame).unwrap().0.len(), 2);
}

#[test]
fn protocol_0_string_escapes() {
    let frame = b"(lp0\n(S'a\\x41\\n\\'\\101\\q'\np1\n(I1\nI2\ntp2\ntp3\na.";
    let (got, errors) = load(frame).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(got, vec![m("aA\n'A\\q", 2.0, S)]);
    let mut dec = super::Decoder::default();
    let top = dec.load(frame).unwrap();
    let item = dec.item(top, 0);
    let (path, ts, value) = dec.datapoint(frame, item).unwrap();
    assert_eq!(path, b"aA\n'A\\q");
    assert_eq!(ts, super::Number::Int(1));
    assert_eq!(value, super::Number::Int(2));
}

#[test]
fn dicts_and_sets_load_but_are_not_datapoints() {
    let frame = P::proto(2)
        .op(op::EMPTY_LIST)
        .op(op::MARK)
        .op(op::EMPTY_DICT)
        .op(op::MARK)
        .unicode("k")
        .op(op::NONE)
        .op(op::SETITEMS)
        .op(op::EMPTY_SET)
        .op(op::MARK)
        .op(op::NONE)
        .op(op::ADDITEMS)
        .op(op::APPENDS)
        .done();
    let (got, errors) = load(&frame).unwrap();
    assert!(got.is_empty());
    assert_eq!(errors.len(), 2);
}

#[test]
fn the_decoder_reuses_its_buffers() {
    let frame = protocol2(&[("a", 1, 1.0), ("b", 2, 2.0)]);
    let mut dec = super::Decoder::default();
    for _ in 0..3 {
        let top = dec.load(&frame).unwrap();
        assert_eq!(dec.items(top).len(), 2);
    }
    assert_eq!(dec.lists.len(), 1);
}

#[test]
fn items_past_the_limits_are_skipped_and_the_others_kept() {
    let frame = protocol2(&[
        ("a;x=1", 1, 1.0),
        ("b;x=1;y=2", 2, 2.0),
        ("c;x=123456789", 3, 3.0),
        ("d", 4, 4.0),
    ]);
    let mut batch = Batch::new();
    batch.set_limits(conflux_core::metric::Limits {
        max_tags: 1,
        max_series_key_bytes: 10,
    });
    let mut errors = Vec::new();
    let n = parse_pickle(&frame, &ParseOptions::new(NOW), &mut batch, &mut errors).unwrap();
    assert_eq!(n, 2);
    let names: Vec<_> = batch.iter().map(|m| m.name().to_owned()).collect();
    assert_eq!(names, ["a", "d"]);
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.line, e.kind.reason(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "too_many_tags", "item 2: too many tags (max 1)"),
            (
                3,
                "series_key_too_long",
                "item 3: series key too long (max 10 bytes)"
            ),
        ]
    );
}

#[test]
fn items_repeating_tags_give_what_each_gives_alone() {
    let items = [
        ("cpu.user;host=a;cpu=cpu0", 1, 1.5),
        ("cpu.system;host=a;cpu=cpu0", 2, 2.0),
        ("~;host=a;cpu=cpu0", 3, 3.0),
        ("cpu.idle;host=a;cpu=cpu0", 4, 4.0),
        ("mem.used;host=a;host=b", 5, 5.0),
        ("mem.free;host=a;host=b", 6, 6.0),
        ("plain", 7, 7.0),
        ("mem.total;host=a;host=b", 8, 8.0),
    ];
    let mut whole = Batch::new();
    let mut whole_errors = Vec::new();
    let opts = ParseOptions::new(NOW);
    let n = parse_pickle(&protocol2(&items), &opts, &mut whole, &mut whole_errors).unwrap();
    let mut single = Batch::new();
    let mut single_errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut errors = Vec::new();
        // Two items: a frame of one is written another way.
        parse_pickle(
            &protocol2(&[*item, ("x", 0, f64::NAN)]),
            &opts,
            &mut single,
            &mut errors,
        )
        .unwrap();
        single_errors.extend(errors.into_iter().filter(|e| e.line == 1).map(|mut e| {
            e.line = i + 1;
            e.message = e.message.replacen("item 1", &format!("item {}", i + 1), 1);
            e
        }));
    }
    assert_eq!(whole_errors, single_errors);
    assert_eq!(n, single.len());
    assert_eq!(whole, single);
    // Tags taken from the item before are shared, not copied.
    assert!(whole.arena_bytes() < single.arena_bytes());
    assert_eq!(n, 7);
}
