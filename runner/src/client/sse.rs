//! Incremental server-sent-events parsing, stamped with the arrival of each event's first byte.
//!
//! [`LineSplitter`] cuts body frames into lines (`\n`, `\r\n` or `\r`, also when a `\r\n` pair
//! is split across frames) and remembers, for each line, the arrival instant of the frame that
//! held its first byte. [`SseParser`] builds events from those lines as the WHATWG
//! event-stream rules say (`data:` lines joined with `\n`, `event:`, `id:`, `retry:`, comments,
//! a leading byte-order mark), and also reports an event left without its blank line at the
//! end of the stream. It interprets no payload: `[DONE]` and JSON are the flavours' business.
//!
//! The hot path allocates nothing per event once its buffers have grown: a line inside one
//! frame is borrowed from the frame, and the data of a one-line event that ends in the frame it
//! started in is handed out without being copied. Arbitrary bytes never panic; a line or event
//! larger than the limit is an error instead of unbounded memory.

use std::ops::Range;
use std::time::Instant;

/// Largest line or event data accepted by default: 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;

/// The stream broke the parser's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event or line is larger than {limit} bytes")]
pub struct SseError {
    /// The limit that was exceeded, in bytes.
    pub limit: usize,
}

/// One line of a stream, without its line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's bytes.
    pub bytes: &'a [u8],
    /// Arrival of the frame that held the line's first byte (or its line end, for an empty line).
    pub at: Instant,
    /// Where the line sits in the frame being fed, when it lies wholly inside it.
    pub range: Option<Range<usize>>,
}

/// Cuts a byte stream into lines, across frame boundaries.
#[derive(Debug)]
pub struct LineSplitter {
    carry: Vec<u8>,
    carry_at: Option<Instant>,
    pending_cr: bool,
    limit: usize,
}

impl LineSplitter {
    /// A splitter refusing lines longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LineSplitter {
            carry: Vec::new(),
            carry_at: None,
            pending_cr: false,
            limit,
        }
    }

    /// Feeds one frame that arrived at `at`, calling `on` for each line it completes.
    pub fn feed<E: From<SseError>>(
        &mut self,
        chunk: &[u8],
        at: Instant,
        mut on: impl FnMut(Line<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pos = 0;
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                pos = 1;
            }
        }
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            let Some(offset) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.carry.len() + rest.len() > self.limit {
                    return Err(SseError { limit: self.limit }.into());
                }
                self.carry_at.get_or_insert(at);
                self.carry.extend_from_slice(rest);
                break;
            };
            let end = pos + offset;
            if let Some(line_at) = self.carry_at.take() {
                if self.carry.len() + offset > self.limit {
                    return Err(SseError { limit: self.limit }.into());
                }
                self.carry.extend_from_slice(&chunk[pos..end]);
                let result = on(Line {
                    bytes: &self.carry,
                    at: line_at,
                    range: None,
                });
                self.carry.clear();
                result?;
            } else {
                on(Line {
                    bytes: &chunk[pos..end],
                    at,
                    range: Some(pos..end),
                })?;
            }
            pos = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: reports a last line that had no line end.
    pub fn finish<E>(&mut self, mut on: impl FnMut(Line<'_>) -> Result<(), E>) -> Result<(), E> {
        self.pending_cr = false;
        let Some(at) = self.carry_at.take() else {
            return Ok(());
        };
        let result = on(Line {
            bytes: &self.carry,
            at,
            range: None,
        });
        self.carry.clear();
        result
    }
}

/// What the parser reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem<'a> {
    /// A complete event.
    Event(SseEvent<'a>),
    /// A comment line (`:` ...), such as a keep-alive.
    Comment {
        /// Arrival of the frame that held the comment's first byte.
        at: Instant,
        /// The comment's text after the colon.
        text: &'a [u8],
    },
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// Arrival of the frame that held the first byte of the event's first field line.
    pub at: Instant,
    /// The `event:` type, empty when none was given (a `message`).
    pub event: &'a [u8],
    /// The `data:` lines, joined with `\n`.
    pub data: &'a [u8],
    /// The last event id seen so far on the stream, if any.
    pub id: Option<&'a [u8]>,
}

impl SseEvent<'_> {
    /// Whether this is the OpenAI end-of-stream sentinel `[DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.trim_ascii() == b"[DONE]"
    }
}

/// Where the current event's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DataSlot {
    /// No `data:` line yet: a blank line dispatches nothing.
    Empty,
    /// One data line, borrowed from the frame being fed.
    InFrame(Range<usize>),
    /// In the parser's own buffer.
    Buffered,
}

#[derive(Debug)]
struct EventState {
    data: Vec<u8>,
    slot: DataSlot,
    event: Vec<u8>,
    last_id: Option<Vec<u8>>,
    retry: Option<u64>,
    event_at: Option<Instant>,
    first_line: bool,
    limit: usize,
}

/// An incremental event-stream parser.
#[derive(Debug)]
pub struct SseParser {
    lines: LineSplitter,
    state: EventState,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default size limit ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        SseParser::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser refusing lines and event data longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            lines: LineSplitter::new(limit),
            state: EventState {
                data: Vec::new(),
                slot: DataSlot::Empty,
                event: Vec::new(),
                last_id: None,
                retry: None,
                event_at: None,
                first_line: true,
                limit,
            },
        }
    }

    /// The last `retry:` value (reconnection time in ms) the stream sent, if any.
    pub fn retry(&self) -> Option<u64> {
        self.state.retry
    }

    /// Feeds one body frame that arrived at `at`, calling `on` for every complete item.
    pub fn feed<E: From<SseError>>(
        &mut self,
        chunk: &[u8],
        at: Instant,
        mut on: impl FnMut(SseItem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let state = &mut self.state;
        let result = self
            .lines
            .feed(chunk, at, |line| state.on_line(line, chunk, &mut on));
        // Data borrowed from this frame must be copied before the frame goes away.
        if let DataSlot::InFrame(range) = &state.slot {
            state.data.clear();
            state.data.extend_from_slice(&chunk[range.clone()]);
            state.slot = DataSlot::Buffered;
        }
        result
    }

    /// Ends the stream: reports a last line without line end, then an event that had no
    /// closing blank line.
    pub fn finish<E: From<SseError>>(
        &mut self,
        mut on: impl FnMut(SseItem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let state = &mut self.state;
        self.lines
            .finish(|line| state.on_line(line, &[], &mut on))?;
        state.dispatch(&[], &mut on)
    }
}

impl EventState {
    fn on_line<E: From<SseError>>(
        &mut self,
        line: Line<'_>,
        chunk: &[u8],
        on: &mut impl FnMut(SseItem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut bytes = line.bytes;
        let mut range = line.range;
        if std::mem::take(&mut self.first_line)
            && let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF")
        {
            bytes = rest;
            range = range.map(|r| r.start + 3..r.end);
        }
        if bytes.is_empty() {
            return self.dispatch(chunk, on);
        }
        if let Some(text) = bytes.strip_prefix(b":") {
            return on(SseItem::Comment { at: line.at, text });
        }
        self.event_at.get_or_insert(line.at);
        let (name, value_start) = match bytes.iter().position(|&b| b == b':') {
            Some(colon) if bytes.get(colon + 1) == Some(&b' ') => (&bytes[..colon], colon + 2),
            Some(colon) => (&bytes[..colon], colon + 1),
            None => (bytes, bytes.len()),
        };
        let value = &bytes[value_start..];
        match name {
            b"data" => self.push_data(value, range.map(|r| r.start + value_start..r.end), chunk),
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
                Ok(())
            }
            b"id" => {
                if !value.contains(&0) {
                    let id = self.last_id.get_or_insert_with(Vec::new);
                    id.clear();
                    id.extend_from_slice(value);
                }
                Ok(())
            }
            b"retry" => {
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    // Too many digits to fit is ignored like any other invalid value.
                    if let Some(ms) = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                        self.retry = Some(ms);
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
        .map_err(E::from)
    }

    fn push_data(
        &mut self,
        value: &[u8],
        range: Option<Range<usize>>,
        chunk: &[u8],
    ) -> Result<(), SseError> {
        let grown = match &self.slot {
            DataSlot::Empty => 0,
            DataSlot::InFrame(r) => r.len() + 1,
            DataSlot::Buffered => self.data.len() + 1,
        };
        if grown + value.len() > self.limit {
            return Err(SseError { limit: self.limit });
        }
        match (&self.slot, range) {
            (DataSlot::Empty, Some(range)) => self.slot = DataSlot::InFrame(range),
            (DataSlot::Empty, None) => {
                self.data.clear();
                self.data.extend_from_slice(value);
                self.slot = DataSlot::Buffered;
            }
            (DataSlot::InFrame(first), _) => {
                // A second data line while the first is still borrowed from this frame.
                let first = chunk.get(first.clone()).unwrap_or_default();
                self.data.clear();
                self.data.extend_from_slice(first);
                self.data.push(b'\n');
                self.data.extend_from_slice(value);
                self.slot = DataSlot::Buffered;
            }
            (DataSlot::Buffered, _) => {
                self.data.push(b'\n');
                self.data.extend_from_slice(value);
            }
        }
        Ok(())
    }

    fn dispatch<E>(
        &mut self,
        chunk: &[u8],
        on: &mut impl FnMut(SseItem<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.event_at.take();
        let data: &[u8] = match &self.slot {
            DataSlot::Empty => {
                self.event.clear();
                return Ok(());
            }
            DataSlot::InFrame(range) => chunk.get(range.clone()).unwrap_or_default(),
            DataSlot::Buffered => &self.data,
        };
        let result = match at {
            Some(at) => on(SseItem::Event(SseEvent {
                at,
                event: &self.event,
                data,
                id: self.last_id.as_deref(),
            })),
            None => Ok(()),
        };
        self.slot = DataSlot::Empty;
        self.data.clear();
        self.event.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Event {
            at: Instant,
            event: String,
            data: String,
            id: Option<String>,
        },
        Comment(Instant, String),
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Parses `frames`, frame `i` arriving at `t0 + i ms`.
    fn parse(frames: &[&[u8]], t0: Instant) -> Vec<Owned> {
        let mut out = Vec::new();
        let mut parser = SseParser::new();
        let mut on = |item: SseItem<'_>| -> Result<(), SseError> {
            out.push(match item {
                SseItem::Event(e) => Owned::Event {
                    at: e.at,
                    event: text(e.event),
                    data: text(e.data),
                    id: e.id.map(text),
                },
                SseItem::Comment { at, text: t } => Owned::Comment(at, text(t)),
            });
            Ok(())
        };
        for (i, frame) in frames.iter().enumerate() {
            parser
                .feed(frame, t0 + Duration::from_millis(i as u64), &mut on)
                .unwrap();
        }
        parser.finish(&mut on).unwrap();
        out
    }

    fn without_times(items: Vec<Owned>, t: Instant) -> Vec<Owned> {
        items
            .into_iter()
            .map(|item| match item {
                Owned::Event {
                    event, data, id, ..
                } => Owned::Event {
                    at: t,
                    event,
                    data,
                    id,
                },
                Owned::Comment(_, c) => Owned::Comment(t, c),
            })
            .collect()
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep-alive\n\n\
data: {\"a\":1}\r\n\r\n\
event: usage\rdata:first\rdata: second\r\rid: 7\ndata\n\n\
retry: 1500\ndata: \xF0\x9F\x98\x80 x\n\n\
data: [DONE]\n\n\
data: tail without blank line";

    fn expected(t: Instant) -> Vec<Owned> {
        let ev = |event: &str, data: &str, id: Option<&str>| Owned::Event {
            at: t,
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        };
        vec![
            Owned::Comment(t, " keep-alive".into()),
            ev("", "{\"a\":1}", None),
            ev("usage", "first\nsecond", None),
            ev("", "", Some("7")),
            ev("", "\u{1F600} x", Some("7")),
            ev("", "[DONE]", Some("7")),
            ev("", "tail without blank line", Some("7")),
        ]
    }

    #[test]
    fn whole_stream_parses_every_field_kind() {
        let t0 = Instant::now();
        let items = parse(&[STREAM], t0);
        assert_eq!(
            without_times(items.clone(), t0),
            without_times(expected(t0), t0)
        );
        let mut parser = SseParser::new();
        parser.feed::<SseError>(STREAM, t0, |_| Ok(())).unwrap();
        assert_eq!(parser.retry(), Some(1500));
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let t0 = Instant::now();
        let whole = without_times(parse(&[STREAM], t0), t0);
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(without_times(parse(&[a, b], t0), t0), whole, "cut at {cut}");
        }
        for cut1 in (0..STREAM.len()).step_by(3) {
            for cut2 in cut1..=STREAM.len() {
                let frames = [&STREAM[..cut1], &STREAM[cut1..cut2], &STREAM[cut2..]];
                assert_eq!(
                    without_times(parse(&frames, t0), t0),
                    whole,
                    "{cut1}/{cut2}"
                );
            }
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(without_times(parse(&bytes, t0), t0), whole);
    }

    #[test]
    fn events_are_stamped_with_their_first_bytes_frame() {
        let t0 = Instant::now();
        let ms = |i| t0 + Duration::from_millis(i);
        let items = parse(
            &[
                b": ping\n\nda",
                b"ta: x\n",
                b"\n",
                b"data: y\n\ndata: z",
                b"\n\n",
            ],
            t0,
        );
        let ats: Vec<Instant> = items
            .iter()
            .map(|i| match i {
                Owned::Event { at, .. } | Owned::Comment(at, _) => *at,
            })
            .collect();
        // The comment and "x" started in frame 0, "y" and "z" in frame 3.
        assert_eq!(ats, vec![ms(0), ms(0), ms(3), ms(3)]);
    }

    #[test]
    fn cr_split_from_its_lf_is_one_line_end() {
        let t0 = Instant::now();
        let items = parse(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"], t0);
        assert_eq!(items.len(), 2, "{items:?}");
    }

    #[test]
    fn done_sentinel_is_recognised() {
        let t = Instant::now();
        let done = SseEvent {
            at: t,
            event: b"",
            data: b"[DONE]",
            id: None,
        };
        assert!(done.is_done());
        assert!(
            !SseEvent {
                data: b"{}",
                ..done
            }
            .is_done()
        );
    }

    #[test]
    fn oversized_lines_and_events_are_errors() {
        let t = Instant::now();
        let mut parser = SseParser::with_limit(16);
        let err = parser
            .feed::<SseError>(b"data: 0123456789abcdef", t, |_| Ok(()))
            .unwrap_err();
        assert_eq!(err.limit, 16);
        let mut parser = SseParser::with_limit(16);
        let err = parser
            .feed::<SseError>(b"data: 0123456789\ndata: 0123456789\n", t, |_| Ok(()))
            .unwrap_err();
        assert_eq!(err.limit, 16);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let t = Instant::now();
        let alphabet = b"data: \r\n:{}event:id:retry:0\xEF\xBB\xBF\x00\xFF";
        for _ in 0..2000 {
            let len = rng.random_range(0..200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        alphabet[rng.random_range(0..alphabet.len())]
                    } else {
                        rng.random()
                    }
                })
                .collect();
            let mut parser = SseParser::with_limit(64);
            let mut pos = 0;
            while pos < bytes.len() {
                let end = rng.random_range(pos..=bytes.len());
                let _ = parser.feed::<SseError>(&bytes[pos..end], t, |_| Ok(()));
                pos = end.max(pos + 1);
            }
            let _ = parser.finish::<SseError>(|_| Ok(()));
        }
    }

    #[test]
    fn line_splitter_reports_lines_with_frame_ranges() {
        let t = Instant::now();
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::new(1024);
        splitter
            .feed::<SseError>(b"{\"a\":1}\n{\"b\"", t, |l| {
                lines.push((text(l.bytes), l.range));
                Ok(())
            })
            .unwrap();
        splitter
            .feed::<SseError>(b":2}", t, |l| {
                lines.push((text(l.bytes), l.range));
                Ok(())
            })
            .unwrap();
        splitter
            .finish::<SseError>(|l| {
                lines.push((text(l.bytes), l.range));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            lines,
            vec![("{\"a\":1}".into(), Some(0..7)), ("{\"b\":2}".into(), None)]
        );
    }
}
