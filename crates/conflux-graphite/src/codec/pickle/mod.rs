//! A data-only pickle decoder for carbon's pickle protocol (port 2004).
//!
//! Carbon clients send `[(path, (timestamp, value)), …]`, pickled with
//! protocol 2 (the documented choice) or whatever their `pickle.dumps`
//! defaults to. This decoder runs the pickle machine for the opcodes that
//! only build data (numbers, strings, bytes, tuples, lists, dicts, sets, the
//! memo) of protocols 0 to 5. Every opcode that would import a name or call
//! something (`GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `BUILD`, `INST`, `OBJ`,
//! `NEWOBJ`, `NEWOBJ_EX`, `EXT1/2/4`, `PERSID`, `BINPERSID`) and the
//! out-of-band buffer opcodes are refused before anything else happens:
//! nothing is ever resolved, looked up or executed, unlike carbon's own
//! "safe" unpickler, which still resolves a short list of globals.
//!
//! Why not the `serde-pickle` crate: it emulates a few calls (`GLOBAL` of
//! `set`, `frozenset`, `_codecs.encode`, then `REDUCE`), so it does not refuse
//! everything that calls; it resolves memo references by deep copies, so a
//! small frame of nested `GET`s can cost exponential time and memory; and it
//! builds a tree of owned values per item, where this decoder borrows strings
//! from the frame and reuses its buffers, allocating nothing per item once warm.
//!
//! Costs are linear in the frame: every opcode pushes at most one value,
//! containers hold handles (a memoized list referenced twice is not copied),
//! and length prefixes are checked against the bytes left before use.

use super::error::{ErrorKind, PickleError};

#[cfg(test)]
mod tests;

/// A value on the pickle stack. Containers are handles: a list is an index
/// into [`Decoder::lists`] (shared, as Python shares the object), a tuple a
/// range of [`Decoder::tuple_items`] (immutable, so copies are equal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val {
    None,
    Bool(bool),
    Int(i64),
    /// A float, or an integer too large for i64 (value approximated).
    Float(f64),
    /// Text or bytes: a range of the frame, or of the decoder's scratch
    /// buffer for protocol 0 strings with escapes.
    Str {
        start: u32,
        end: u32,
        scratch: bool,
    },
    List(u32),
    Tuple {
        start: u32,
        len: u32,
    },
    /// Contents are never needed to read datapoints, so they are dropped.
    Dict,
    Set,
    /// Memo slot never set.
    Unset,
}

/// A number as a datapoint holds it; text is read as carbon's `float()` would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number<'a> {
    Int(i64),
    Float(f64),
    Text(&'a [u8]),
}

/// The pickle machine's state, reused between frames.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: Vec<Val>,
    memo_count: usize,
    lists: Vec<Vec<Val>>,
    lists_used: usize,
    tuple_items: Vec<Val>,
    scratch: Vec<u8>,
}

/// Highest pickle protocol this decoder reads.
pub const HIGHEST_PROTOCOL: u8 = 5;

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// The opcodes that import, call or need a callback: refused on sight.
pub const FORBIDDEN: [(u8, &str); 15] = [
    (op::PERSID, "PERSID"),
    (op::BINPERSID, "BINPERSID"),
    (op::REDUCE, "REDUCE"),
    (op::BUILD, "BUILD"),
    (op::GLOBAL, "GLOBAL"),
    (op::INST, "INST"),
    (op::OBJ, "OBJ"),
    (op::NEWOBJ, "NEWOBJ"),
    (op::EXT1, "EXT1"),
    (op::EXT2, "EXT2"),
    (op::EXT4, "EXT4"),
    (op::NEWOBJ_EX, "NEWOBJ_EX"),
    (op::STACK_GLOBAL, "STACK_GLOBAL"),
    (op::NEXT_BUFFER, "NEXT_BUFFER"),
    (op::READONLY_BUFFER, "READONLY_BUFFER"),
];

fn forbidden_name(code: u8) -> Option<&'static str> {
    FORBIDDEN.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// Where decoding stopped and why.
struct Stop {
    kind: ErrorKind,
    message: String,
}

impl Stop {
    fn invalid(message: impl Into<String>) -> Stop {
        Stop {
            kind: ErrorKind::InvalidPickle,
            message: message.into(),
        }
    }
}

fn truncated() -> Stop {
    Stop::invalid("truncated")
}

fn underflow(what: &str) -> Stop {
    Stop::invalid(format!("stack underflow at {what}"))
}

/// Reads the frame.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.data.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<(usize, &'a [u8]), Stop> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(truncated)?;
        self.pos = end;
        Ok((start, &self.data[start..end]))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let (_, b) = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A text argument up to `\n` (protocol 0), without the newline.
    fn line(&mut self) -> Result<(usize, &'a [u8]), Stop> {
        let start = self.pos;
        let rest = self.data.get(start..).unwrap_or_default();
        let nl = memchr::memchr(b'\n', rest).ok_or_else(truncated)?;
        self.pos = start + nl + 1;
        Ok((start, &rest[..nl]))
    }

    fn u32_le(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

impl Decoder {
    fn reset(&mut self) {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.memo_count = 0;
        self.lists_used = 0;
        self.tuple_items.clear();
        self.scratch.clear();
    }

    /// Load a frame. The result is the list (or tuple) of items.
    pub(crate) fn load(&mut self, frame: &[u8]) -> Result<Val, PickleError> {
        self.reset();
        let mut r = Reader {
            data: frame,
            pos: 0,
        };
        let mut at;
        let result = loop {
            at = r.pos;
            match self.step(&mut r) {
                Ok(Some(v)) => break Ok(v),
                Ok(None) => {}
                Err(stop) => break Err(stop),
            }
        };
        let top = result.map_err(|s| PickleError {
            offset: at,
            message: s.message,
            kind: s.kind,
        })?;
        match top {
            Val::List(_) | Val::Tuple { .. } => Ok(top),
            other => Err(PickleError {
                offset: at,
                message: format!(
                    "the pickle holds {}, not a list of datapoints",
                    describe(other)
                ),
                kind: ErrorKind::NotAList,
            }),
        }
    }

    /// The items of a list or tuple (anything else has none).
    pub(crate) fn items(&self, v: Val) -> &[Val] {
        match v {
            Val::List(i) => self.lists.get(i as usize).map_or(&[], Vec::as_slice),
            Val::Tuple { start, len } => {
                let s = start as usize;
                self.tuple_items
                    .get(s..s + len as usize)
                    .unwrap_or_default()
            }
            _ => &[],
        }
    }

    /// Item `index` of the list or tuple `top`.
    pub(crate) fn item(&self, top: Val, index: usize) -> Val {
        self.items(top).get(index).copied().unwrap_or(Val::None)
    }

    /// `(path, (timestamp, value))`, as carbon unpacks it; `None` when the
    /// item does not unpack that way (a list works as well as a tuple, as
    /// in Python).
    pub(crate) fn datapoint<'a>(
        &'a self,
        frame: &'a [u8],
        item: Val,
    ) -> Option<(&'a [u8], Number<'a>, Number<'a>)> {
        let [path, point] = self.items(item) else {
            return None;
        };
        let [ts, value] = self.items(*point) else {
            return None;
        };
        let path = self.bytes(frame, *path)?;
        Some((path, self.number(frame, *ts)?, self.number(frame, *value)?))
    }

    fn bytes<'a>(&'a self, frame: &'a [u8], v: Val) -> Option<&'a [u8]> {
        match v {
            Val::Str {
                start,
                end,
                scratch,
            } => {
                let src = if scratch { &self.scratch[..] } else { frame };
                src.get(start as usize..end as usize)
            }
            _ => None,
        }
    }

    fn number<'a>(&'a self, frame: &'a [u8], v: Val) -> Option<Number<'a>> {
        match v {
            Val::Int(i) => Some(Number::Int(i)),
            Val::Bool(b) => Some(Number::Int(i64::from(b))),
            Val::Float(f) => Some(Number::Float(f)),
            Val::Str { .. } => self.bytes(frame, v).map(Number::Text),
            _ => None,
        }
    }

    /// The fence: values below the last mark belong to an outer container.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, what: &str) -> Result<Val, Stop> {
        if self.stack.len() <= self.fence() {
            return Err(underflow(what));
        }
        self.stack.pop().ok_or_else(|| underflow(what))
    }

    fn top(&self, what: &str) -> Result<Val, Stop> {
        if self.stack.len() <= self.fence() {
            return Err(underflow(what));
        }
        self.stack.last().copied().ok_or_else(|| underflow(what))
    }

    /// Start of the values above the last mark, and that mark removed.
    fn pop_mark(&mut self, what: &str) -> Result<usize, Stop> {
        self.marks
            .pop()
            .ok_or_else(|| Stop::invalid(format!("{what} without MARK")))
    }

    fn new_list(&mut self, from: usize) -> Val {
        if self.lists_used == self.lists.len() {
            self.lists.push(Vec::new());
        }
        let i = self.lists_used;
        self.lists_used += 1;
        let list = &mut self.lists[i];
        list.clear();
        list.extend_from_slice(&self.stack[from..]);
        self.stack.truncate(from);
        Val::List(i as u32)
    }

    fn new_tuple(&mut self, from: usize) -> Val {
        let start = self.tuple_items.len();
        self.tuple_items.extend_from_slice(&self.stack[from..]);
        let len = self.stack.len() - from;
        self.stack.truncate(from);
        Val::Tuple {
            start: start as u32,
            len: len as u32,
        }
    }

    fn list_mut(&mut self, target: Val, what: &str) -> Result<&mut Vec<Val>, Stop> {
        match target {
            Val::List(i) => self
                .lists
                .get_mut(i as usize)
                .ok_or_else(|| Stop::invalid("bad list handle")),
            other => Err(Stop::invalid(format!(
                "{what} on {}, not a list",
                describe(other)
            ))),
        }
    }

    fn memo_put(&mut self, id: usize, frame_len: usize) -> Result<(), Stop> {
        let v = self.top("PUT")?;
        // Picklers number memo entries from 0, one per put, so an id past the
        // frame length is hostile; refusing it bounds the memo by the frame.
        if id > frame_len {
            return Err(Stop::invalid(format!("memo id {id} out of range")));
        }
        if id >= self.memo.len() {
            self.memo.resize(id + 1, Val::Unset);
        }
        if self.memo[id] == Val::Unset {
            self.memo_count += 1;
        }
        self.memo[id] = v;
        Ok(())
    }

    fn memo_get(&mut self, id: usize) -> Result<(), Stop> {
        match self.memo.get(id) {
            Some(v) if *v != Val::Unset => {
                self.stack.push(*v);
                Ok(())
            }
            _ => Err(Stop::invalid(format!("memo id {id} not set"))),
        }
    }

    fn str_val(start: usize, len: usize) -> Result<Val, Stop> {
        let end = start + len;
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) else {
            return Err(Stop::invalid("frame larger than 4 GiB"));
        };
        Ok(Val::Str {
            start,
            end,
            scratch: false,
        })
    }

    fn scratch_val(&self, start: usize) -> Result<Val, Stop> {
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.scratch.len())) else {
            return Err(Stop::invalid("string larger than 4 GiB"));
        };
        Ok(Val::Str {
            start,
            end,
            scratch: true,
        })
    }

    /// Run one opcode. `Some(value)` at STOP.
    fn step(&mut self, r: &mut Reader<'_>) -> Result<Option<Val>, Stop> {
        let code = r.byte()?;
        if let Some(name) = forbidden_name(code) {
            return Err(Stop {
                kind: ErrorKind::ForbiddenOpcode,
                message: format!("opcode {name} (0x{code:02x}) would import or call: refused"),
            });
        }
        let frame_len = r.data.len();
        match code {
            op::PROTO => {
                let v = r.byte()?;
                if v > HIGHEST_PROTOCOL {
                    return Err(Stop::invalid(format!("unsupported pickle protocol {v}")));
                }
            }
            op::FRAME => {
                // Framing only helps a streaming reader; the frame is whole here.
                r.take(8)?;
            }
            op::STOP => {
                let v = self.pop("STOP")?;
                return Ok(Some(v));
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                // CPython: with nothing above the mark, POP discards the mark.
                if self.stack.len() > self.fence() {
                    self.stack.pop();
                } else {
                    self.pop_mark("POP")?;
                }
            }
            op::POP_MARK => {
                let from = self.pop_mark("POP_MARK")?;
                self.stack.truncate(from);
            }
            op::DUP => {
                let v = self.top("DUP")?;
                self.stack.push(v);
            }

            op::NONE => self.stack.push(Val::None),
            op::NEWTRUE => self.stack.push(Val::Bool(true)),
            op::NEWFALSE => self.stack.push(Val::Bool(false)),
            op::INT => {
                let (_, line) = r.line()?;
                let v = match line {
                    // Protocol 0 spells booleans `I01` and `I00`.
                    b"01" => Val::Bool(true),
                    b"00" => Val::Bool(false),
                    _ => text_int(line).ok_or_else(|| Stop::invalid("bad INT"))?,
                };
                self.stack.push(v);
            }
            op::LONG => {
                let (_, line) = r.line()?;
                let line = line.strip_suffix(b"L").unwrap_or(line);
                let v = text_int(line).ok_or_else(|| Stop::invalid("bad LONG"))?;
                self.stack.push(v);
            }
            op::FLOAT => {
                let (_, line) = r.line()?;
                let f = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .ok_or_else(|| Stop::invalid("bad FLOAT"))?;
                self.stack.push(Val::Float(f));
            }
            op::BINFLOAT => self.stack.push(Val::Float(f64::from_be_bytes(r.array()?))),
            op::BININT => self
                .stack
                .push(Val::Int(i64::from(i32::from_le_bytes(r.array()?)))),
            op::BININT1 => self.stack.push(Val::Int(i64::from(r.byte()?))),
            op::BININT2 => self
                .stack
                .push(Val::Int(i64::from(u16::from_le_bytes(r.array()?)))),
            op::LONG1 => {
                let n = usize::from(r.byte()?);
                let (_, b) = r.take(n)?;
                self.stack.push(le_long(b));
            }
            op::LONG4 => {
                let n = i32::from_le_bytes(r.array()?);
                let n = usize::try_from(n).map_err(|_| Stop::invalid("negative LONG4 length"))?;
                let (_, b) = r.take(n)?;
                self.stack.push(le_long(b));
            }

            op::SHORT_BINSTRING | op::SHORT_BINBYTES | op::SHORT_BINUNICODE => {
                let n = usize::from(r.byte()?);
                let (start, _) = r.take(n)?;
                self.stack.push(Self::str_val(start, n)?);
            }
            op::BINSTRING => {
                let n = i32::from_le_bytes(r.array()?);
                let n =
                    usize::try_from(n).map_err(|_| Stop::invalid("negative BINSTRING length"))?;
                let (start, _) = r.take(n)?;
                self.stack.push(Self::str_val(start, n)?);
            }
            op::BINUNICODE | op::BINBYTES => {
                let n = r.u32_le()? as usize;
                let (start, _) = r.take(n)?;
                self.stack.push(Self::str_val(start, n)?);
            }
            op::BINUNICODE8 | op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = u64::from_le_bytes(r.array()?);
                let n = usize::try_from(n).map_err(|_| truncated())?;
                let (start, _) = r.take(n)?;
                self.stack.push(Self::str_val(start, n)?);
            }
            op::STRING => {
                let (start, line) = r.line()?;
                let v = self.escaped_string(start, line)?;
                self.stack.push(v);
            }
            op::UNICODE => {
                let (start, line) = r.line()?;
                let v = self.raw_unicode(start, line)?;
                self.stack.push(v);
            }

            op::EMPTY_TUPLE => self.stack.push(Val::Tuple { start: 0, len: 0 }),
            op::TUPLE => {
                let from = self.pop_mark("TUPLE")?;
                let t = self.new_tuple(from);
                self.stack.push(t);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(code - op::TUPLE1 + 1);
                if self.stack.len() < self.fence() + n {
                    return Err(underflow("TUPLE1/2/3"));
                }
                let from = self.stack.len() - n;
                let t = self.new_tuple(from);
                self.stack.push(t);
            }
            op::EMPTY_LIST => {
                let from = self.stack.len();
                let l = self.new_list(from);
                self.stack.push(l);
            }
            op::LIST => {
                let from = self.pop_mark("LIST")?;
                let l = self.new_list(from);
                self.stack.push(l);
            }
            op::APPEND => {
                let v = self.pop("APPEND")?;
                let target = self.top("APPEND")?;
                self.list_mut(target, "APPEND")?.push(v);
            }
            op::APPENDS => {
                let from = self.pop_mark("APPENDS")?;
                // The list sits just below the mark, above the outer fence.
                if from == 0 || from <= self.fence() {
                    return Err(underflow("APPENDS"));
                }
                let target = self.stack[from - 1];
                let (stack, lists) = (&mut self.stack, &mut self.lists);
                let list = match target {
                    Val::List(i) => lists
                        .get_mut(i as usize)
                        .ok_or_else(|| Stop::invalid("bad list handle"))?,
                    other => {
                        return Err(Stop::invalid(format!(
                            "APPENDS on {}, not a list",
                            describe(other)
                        )));
                    }
                };
                list.extend_from_slice(&stack[from..]);
                stack.truncate(from);
            }
            op::EMPTY_DICT => self.stack.push(Val::Dict),
            op::DICT => {
                let from = self.pop_mark("DICT")?;
                if !(self.stack.len() - from).is_multiple_of(2) {
                    return Err(Stop::invalid("odd number of items for DICT"));
                }
                self.stack.truncate(from);
                self.stack.push(Val::Dict);
            }
            op::SETITEM => {
                self.pop("SETITEM")?;
                self.pop("SETITEM")?;
                expect_container(self.top("SETITEM")?, Val::Dict, "SETITEM")?;
            }
            op::SETITEMS => {
                let from = self.pop_mark("SETITEMS")?;
                if !(self.stack.len() - from).is_multiple_of(2) {
                    return Err(Stop::invalid("odd number of items for SETITEMS"));
                }
                self.stack.truncate(from);
                expect_container(self.top("SETITEMS")?, Val::Dict, "SETITEMS")?;
            }
            op::EMPTY_SET => self.stack.push(Val::Set),
            op::FROZENSET => {
                let from = self.pop_mark("FROZENSET")?;
                self.stack.truncate(from);
                self.stack.push(Val::Set);
            }
            op::ADDITEMS => {
                let from = self.pop_mark("ADDITEMS")?;
                self.stack.truncate(from);
                expect_container(self.top("ADDITEMS")?, Val::Set, "ADDITEMS")?;
            }

            op::PUT => {
                let (_, line) = r.line()?;
                let id = text_id(line).ok_or_else(|| Stop::invalid("bad PUT id"))?;
                self.memo_put(id, frame_len)?;
            }
            op::BINPUT => {
                let id = usize::from(r.byte()?);
                self.memo_put(id, frame_len)?;
            }
            op::LONG_BINPUT => {
                let id = r.u32_le()? as usize;
                self.memo_put(id, frame_len)?;
            }
            op::MEMOIZE => {
                let id = self.memo_count;
                self.memo_put(id, frame_len)?;
            }
            op::GET => {
                let (_, line) = r.line()?;
                let id = text_id(line).ok_or_else(|| Stop::invalid("bad GET id"))?;
                self.memo_get(id)?;
            }
            op::BINGET => {
                let id = usize::from(r.byte()?);
                self.memo_get(id)?;
            }
            op::LONG_BINGET => {
                let id = r.u32_le()? as usize;
                self.memo_get(id)?;
            }
            other => {
                return Err(Stop::invalid(format!("unknown opcode 0x{other:02x}")));
            }
        }
        Ok(None)
    }
}

fn describe(v: Val) -> &'static str {
    match v {
        Val::None => "None",
        Val::Bool(_) => "a bool",
        Val::Int(_) => "an int",
        Val::Float(_) => "a float",
        Val::Str { .. } => "a string",
        Val::List(_) => "a list",
        Val::Tuple { .. } => "a tuple",
        Val::Dict => "a dict",
        Val::Set => "a set",
        Val::Unset => "nothing",
    }
}

fn expect_container(v: Val, want: Val, what: &str) -> Result<(), Stop> {
    if v == want {
        Ok(())
    } else {
        Err(Stop::invalid(format!(
            "{what} on {}, not {}",
            describe(v),
            describe(want)
        )))
    }
}

/// A protocol 0 memo id: decimal digits.
fn text_id(line: &[u8]) -> Option<usize> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// A protocol 0 integer (`INT`, `LONG`): i64 when it fits, else a float.
fn text_int(line: &[u8]) -> Option<Val> {
    let s = std::str::from_utf8(line).ok()?.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Val::Int(i));
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<f64>().ok().map(Val::Float)
}

/// `LONG1`/`LONG4`: little-endian two's complement of any length.
fn le_long(b: &[u8]) -> Val {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut buf = [fill; 8];
        buf[..b.len()].copy_from_slice(b);
        return Val::Int(i64::from_le_bytes(buf));
    }
    // Past i64: approximate (a datapoint value is a float anyway).
    let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut f = 0.0f64;
    for &byte in b.iter().rev() {
        let byte = if negative { !byte } else { byte };
        f = f * 256.0 + f64::from(byte);
    }
    Val::Float(if negative { -(f + 1.0) } else { f })
}

impl Decoder {
    /// Protocol 0 `STRING`: a Python 2 `repr` of a byte string, quotes
    /// included, with `\\`, `\'`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`, `\f`,
    /// `\v`, `\xhh` and octal escapes (`codecs.escape_decode`).
    fn escaped_string(&mut self, start: usize, line: &[u8]) -> Result<Val, Stop> {
        let quoted = match line {
            [q, inner @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => inner,
            _ => return Err(Stop::invalid("STRING not quoted")),
        };
        if memchr::memchr(b'\\', quoted).is_none() {
            return Self::str_val(start + 1, quoted.len());
        }
        let s = self.scratch.len();
        let mut i = 0;
        while i < quoted.len() {
            let b = quoted[i];
            i += 1;
            if b != b'\\' {
                self.scratch.push(b);
                continue;
            }
            let Some(&e) = quoted.get(i) else {
                return Err(Stop::invalid("STRING ends in a backslash"));
            };
            i += 1;
            let out = match e {
                b'\\' => b'\\',
                b'\'' => b'\'',
                b'"' => b'"',
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'a' => 0x07,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'v' => 0x0b,
                b'x' => {
                    let hex = quoted
                        .get(i..i + 2)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| Stop::invalid("bad \\x escape in STRING"))?;
                    i += 2;
                    hex
                }
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match quoted.get(i) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    // Python keeps the low byte of an octal escape above \377.
                    (v & 0xff) as u8
                }
                // Unknown escapes stay as written.
                other => {
                    self.scratch.push(b'\\');
                    other
                }
            };
            self.scratch.push(out);
        }
        self.scratch_val(s)
    }

    /// Protocol 0 `UNICODE`: raw-unicode-escape, i.e. Latin-1 bytes with
    /// `\uXXXX` and `\UXXXXXXXX` escapes; stored as UTF-8.
    fn raw_unicode(&mut self, start: usize, line: &[u8]) -> Result<Val, Stop> {
        if line.is_ascii() && memchr::memchr(b'\\', line).is_none() {
            return Self::str_val(start, line.len());
        }
        let s = self.scratch.len();
        let mut i = 0;
        let mut buf = [0u8; 4];
        while i < line.len() {
            let b = line[i];
            let width = match (b, line.get(i + 1)) {
                (b'\\', Some(b'u')) => 4,
                (b'\\', Some(b'U')) => 8,
                _ => 0,
            };
            let c = if width > 0 {
                let hex = line
                    .get(i + 2..i + 2 + width)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Stop::invalid("bad \\u escape in UNICODE"))?;
                i += 2 + width;
                char::from_u32(hex).unwrap_or(char::REPLACEMENT_CHARACTER)
            } else {
                i += 1;
                char::from(b)
            };
            self.scratch
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        self.scratch_val(s)
    }
}
